"""The answer of ``/api/analytics``: the metrics of the filtered rows and the breakdowns asked for."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final

import polars as pl

from otcommon.schemas import DerivedMetrics
from query_api import breakdowns
from query_api.columns import PURCHASE_QUARTER
from query_api.engine import collected
from query_api.metrics import TOTALS_COLUMNS, metrics_from, partial_totals
from query_api.models import (  # noqa: TC001 - pydantic resolves the fields at run time
    BreakdownRow,
    Granularity,
    RouteSummary,
    TimeSeriesPoint,
)
from query_api.rollups import answers_from_partials

if TYPE_CHECKING:
    from collections.abc import Collection

    from query_api.filters import TransactionFilter
    from query_api.readmodel import ReadModel
    from query_api.scope import EventScope


class Breakdown(StrEnum):
    """The breakdowns a caller may ask for with ``include=``."""

    TICKET_TYPES = "ticketTypes"
    SOURCES = "sources"
    REFERRAL_CODES = "referralCodes"
    EVENTS = "events"
    DEPOSITS = "deposits"
    ROUTES = "routes"
    TIME_SERIES = "timeSeries"


class AnalyticsReport(DerivedMetrics):
    """``DerivedMetrics``, plus each breakdown that was asked for (absent otherwise)."""

    by_ticket_type: list[BreakdownRow] | None = None
    by_source: list[BreakdownRow] | None = None
    by_referral_code: list[BreakdownRow] | None = None
    by_event: list[BreakdownRow] | None = None
    by_deposit_status: list[BreakdownRow] | None = None
    routing: RouteSummary | None = None
    time_series: list[TimeSeriesPoint] | None = None


def analyze(
    model: ReadModel,
    scope: EventScope,
    filters: TransactionFilter,
    *,
    time_zone: str = "UTC",
    include: Collection[Breakdown] = (),
    granularity: Granularity = "day",
) -> AnalyticsReport:
    """Metrics and the requested breakdowns over the rows the caller may see that match the filters.

    A question that selects whole events only is answered from the per-event partials; any other
    filter reads the matching rows (only the columns the answer needs). Either way the sums the
    answer needs are planned first and collected in one call.
    """
    wanted = set(include)
    if answers_from_partials(filters):
        groups = [name for name, breakdown in _GROUP_OF.items() if breakdown in wanted]
        plans = model.rollups().sums(scope, filters, groups)
    else:
        rows = model.rows(scope, filters, columns=_columns_for(wanted)).lazy()
        plans = _row_plans(rows, wanted)
    return _report_from(collected(plans), wanted=wanted, time_zone=time_zone, granularity=granularity)


def _row_plans(rows: pl.LazyFrame, wanted: set[Breakdown]) -> dict[str, pl.LazyFrame]:
    """The sums of the matching rows: totals, per quarter-hour, per breakdown key."""
    plans = {
        "totals": rows.select(partial_totals()),
        "quarters": rows.group_by(PURCHASE_QUARTER).agg(breakdowns.quarter_sums()),
    }
    for name, breakdown in _GROUP_OF.items():
        if breakdown in wanted:
            plans[name] = breakdowns.group_plan(rows, name)
    if Breakdown.ROUTES in wanted:
        plans["accounts"] = breakdowns.accounts_plan(rows)
        plans["unresolved"] = rows.select(breakdowns.unresolved_count())
    return plans


def _report_from(
    sums: dict[str, pl.DataFrame], *, wanted: set[Breakdown], time_zone: str, granularity: Granularity
) -> AnalyticsReport:
    """The report from the collected sums (``_row_plans`` or ``_partial_plans``)."""
    quarters = sums["quarters"]
    per_quarter = quarters.select(PURCHASE_QUARTER, pl.col("ordersCount").alias("orders"))
    report = _report(metrics_from(sums["totals"].row(0, named=True), per_quarter, time_zone=time_zone))
    report.by_ticket_type = _rows_if(sums, "ticketTypes")
    report.by_source = _rows_if(sums, "sources")
    report.by_referral_code = _rows_if(sums, "referralCodes")
    report.by_event = _rows_if(sums, "events")
    report.by_deposit_status = _rows_if(sums, "deposits")
    if Breakdown.ROUTES in wanted:
        unresolved = int(sums["unresolved"]["unresolved"][0] or 0)
        report.routing = breakdowns.routes_from(sums["routes"], sums["accounts"], unresolved)
    if Breakdown.TIME_SERIES in wanted:
        report.time_series = breakdowns.series_from_quarters(
            quarters, granularity=granularity, time_zone=time_zone
        )
    return report


_BREAKDOWN_COLUMNS: Final[dict[Breakdown, tuple[str, ...]]] = {
    Breakdown.TICKET_TYPES: ("ticketTypeList",),
    Breakdown.SOURCES: (),
    Breakdown.REFERRAL_CODES: ("referralCodeNormalized",),
    Breakdown.EVENTS: ("eventId", "EventName"),
    Breakdown.DEPOSITS: ("depositStatus",),
    Breakdown.ROUTES: (
        "stripeRouteType",
        "stripeDestinationAccountId",
        "stripeDestinationAccountName",
        "enrichmentState",
    ),
    Breakdown.TIME_SERIES: (),
}


def _columns_for(wanted: set[Breakdown]) -> list[str]:
    """The columns the metrics and the wanted breakdowns read: the rest of the row is not copied."""
    columns = dict.fromkeys(TOTALS_COLUMNS)
    for breakdown in sorted(wanted):
        columns.update(dict.fromkeys(_BREAKDOWN_COLUMNS[breakdown]))
    return list(columns)


def _report(metrics: DerivedMetrics) -> AnalyticsReport:
    return AnalyticsReport.model_validate(metrics.model_dump())


_GROUP_OF: Final = {
    "ticketTypes": Breakdown.TICKET_TYPES,
    "sources": Breakdown.SOURCES,
    "referralCodes": Breakdown.REFERRAL_CODES,
    "events": Breakdown.EVENTS,
    "deposits": Breakdown.DEPOSITS,
    "routes": Breakdown.ROUTES,
}


def _rows_if(summed: dict[str, pl.DataFrame], name: str) -> list[BreakdownRow] | None:
    return breakdowns.rows_of(summed[name]) if name in summed else None


def report_json(report: AnalyticsReport) -> dict[str, object]:
    """The JSON body: every metric, and only the breakdowns that were asked for."""
    metric_names = {field.alias or name for name, field in DerivedMetrics.model_fields.items()}
    body = report.model_dump(mode="json", by_alias=True)
    return {key: value for key, value in body.items() if key in metric_names or value is not None}
