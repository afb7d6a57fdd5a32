"""The answer of ``/api/analytics``: the metrics of the filtered rows and the breakdowns asked for."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final

import polars as pl

from otcommon.schemas import DerivedMetrics
from query_api import breakdowns
from query_api.columns import PURCHASE_QUARTER
from query_api.engine import grouped, selected
from query_api.metrics import TOTALS_COLUMNS, compute_metrics, metrics_from
from query_api.models import (  # noqa: TC001 - pydantic resolves the fields at run time
    BreakdownRow,
    Granularity,
    RouteSummary,
    TimeSeriesPoint,
)
from query_api.rollups import EVENT, answers_from_partials

if TYPE_CHECKING:
    from collections.abc import Collection

    from query_api.filters import TransactionFilter
    from query_api.readmodel import ReadModel
    from query_api.rollups import Partials
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
    filter reads the matching rows (only the columns the answer needs).
    """
    wanted = set(include)
    if answers_from_partials(filters):
        partials = model.rollups().selected(scope, filters)
        return _from_partials(partials, time_zone=time_zone, wanted=wanted, granularity=granularity)
    rows = model.rows(scope, filters, columns=_columns_for(wanted))
    report = _report(compute_metrics(rows, time_zone=time_zone))
    if Breakdown.TICKET_TYPES in wanted:
        report.by_ticket_type = breakdowns.by_ticket_type(rows)
    if Breakdown.SOURCES in wanted:
        report.by_source = breakdowns.by_source(rows)
    if Breakdown.REFERRAL_CODES in wanted:
        report.by_referral_code = breakdowns.by_referral_code(rows)
    if Breakdown.EVENTS in wanted:
        report.by_event = breakdowns.by_event(rows)
    if Breakdown.DEPOSITS in wanted:
        report.by_deposit_status = breakdowns.by_deposit_status(rows)
    if Breakdown.ROUTES in wanted:
        report.routing = breakdowns.route_summary(rows)
    if Breakdown.TIME_SERIES in wanted:
        report.time_series = breakdowns.time_series(rows, granularity=granularity, time_zone=time_zone)
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


def _from_partials(
    partials: Partials, *, time_zone: str, wanted: set[Breakdown], granularity: Granularity
) -> AnalyticsReport:
    """The report from the sums of the selected events' partials."""
    totals = selected(partials.totals, pl.exclude(EVENT).sum()).row(0, named=True)
    quarters = grouped(partials.quarters, [PURCHASE_QUARTER], pl.exclude(EVENT).sum())
    per_quarter = quarters.select(PURCHASE_QUARTER, pl.col("ordersCount").alias("orders"))
    report = _report(metrics_from(totals, per_quarter, time_zone=time_zone))
    summed = {name: _summed_groups(partials.groups[name]) for name in _GROUP_OF if _GROUP_OF[name] in wanted}
    report.by_ticket_type = _rows_if(summed, "ticketTypes")
    report.by_source = _rows_if(summed, "sources")
    report.by_referral_code = _rows_if(summed, "referralCodes")
    report.by_event = _rows_if(summed, "events")
    report.by_deposit_status = _rows_if(summed, "deposits")
    if Breakdown.ROUTES in wanted:
        accounts = grouped(
            partials.accounts,
            ["accountId"],
            pl.col("accountName").max(),
            pl.col("ordersCount").sum(),
            pl.col("grossRevenue").sum(),
        )
        unresolved = int(partials.unresolved["unresolved"].sum())
        report.routing = breakdowns.routes_from(summed["routes"], accounts, unresolved)
    if Breakdown.TIME_SERIES in wanted:
        report.time_series = breakdowns.series_from_quarters(
            quarters, granularity=granularity, time_zone=time_zone
        )
    return report


_GROUP_OF: Final = {
    "ticketTypes": Breakdown.TICKET_TYPES,
    "sources": Breakdown.SOURCES,
    "referralCodes": Breakdown.REFERRAL_CODES,
    "events": Breakdown.EVENTS,
    "deposits": Breakdown.DEPOSITS,
    "routes": Breakdown.ROUTES,
}


def _summed_groups(per_event: pl.DataFrame) -> pl.DataFrame:
    label = [pl.col("label").max()] if "label" in per_event.columns else []
    return grouped(per_event, ["key"], *(pl.col(name).sum() for name in breakdowns.GROUP_COLUMNS), *label)


def _rows_if(summed: dict[str, pl.DataFrame], name: str) -> list[BreakdownRow] | None:
    return breakdowns.rows_of(summed[name]) if name in summed else None


def report_json(report: AnalyticsReport) -> dict[str, object]:
    """The JSON body: every metric, and only the breakdowns that were asked for."""
    metric_names = {field.alias or name for name, field in DerivedMetrics.model_fields.items()}
    body = report.model_dump(mode="json", by_alias=True)
    return {key: value for key, value in body.items() if key in metric_names or value is not None}
