"""The answer of ``/api/analytics``: the metrics of the filtered rows and the breakdowns asked for."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final

import polars as pl

from otcommon.schemas import DerivedMetrics
from query_api import breakdowns
from query_api.columns import PURCHASE_QUARTER, TICKET_TYPES_TEXT
from query_api.engine import collected
from query_api.metrics import TOTALS_COLUMNS, metric_values, partial_totals, slot_plan
from query_api.models import (  # noqa: TC001 - pydantic resolves the fields at run time
    BreakdownRow,
    Granularity,
    RouteSummary,
    TimeSeriesPoint,
)
from query_api.rollups import answers_from_partials
from query_api.timezones import LocalClock

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
    filter reads the matching rows (only the columns the answer needs). Either way every sum the
    answer needs, the peaks' and the time series' included, is planned first and collected in one
    call; what is left is turning a few small frames into the report.
    """
    wanted = set(include)
    if answers_from_partials(filters):
        groups = [name for name, breakdown in _GROUP_OF.items() if breakdown in wanted]
        summed = model.rollups().sums(scope, filters, groups)
        plans, quarters, of_sums = summed.plans, summed.quarters, True
        clock = LocalClock.of(time_zone, summed.quarter_range)
    else:
        rows = model.rows(scope, filters, columns=_columns_for(wanted))
        quarters, of_sums = rows.lazy(), False
        plans = _row_plans(quarters, wanted)
        clock = LocalClock.of(time_zone, rows[PURCHASE_QUARTER])
    orders = pl.col("ordersCount").sum() if of_sums else pl.len()
    plans["slots"] = slot_plan(quarters, clock, orders)
    if Breakdown.TIME_SERIES in wanted:
        sums = breakdowns.series_sums(of_sums=of_sums)
        plans["series"] = breakdowns.series_plan(quarters, clock, granularity=granularity, sums=sums)
    for name in _GROUP_OF:
        if name in plans:
            plans[name] = breakdowns.in_report_order(plans[name])
    if "accounts" in plans:
        plans["accounts"] = breakdowns.top_account_plan(plans["accounts"])
    return _report_from(collected(plans))


def _row_plans(rows: pl.LazyFrame, wanted: set[Breakdown]) -> dict[str, pl.LazyFrame]:
    """The sums of the matching rows: totals and, per breakdown asked for, sums per key."""
    plans = {"totals": rows.select(partial_totals())}
    for name, breakdown in _GROUP_OF.items():
        if breakdown in wanted:
            plans[name] = breakdowns.group_plan(rows, name)
    if Breakdown.ROUTES in wanted:
        plans["accounts"] = breakdowns.accounts_plan(rows)
        plans["unresolved"] = rows.select(breakdowns.unresolved_count())
    return plans


def _report_from(sums: dict[str, pl.DataFrame]) -> AnalyticsReport:
    """The report from the collected sums, validated once as a whole."""
    fields = metric_values(sums["totals"].row(0, named=True), sums["slots"])
    for name, field in _FIELD_OF.items():
        if name in sums:
            fields[field] = sums[name].to_dicts()
    if "routes" in sums:
        unresolved = int(sums["unresolved"]["unresolved"][0] or 0)
        fields["routing"] = breakdowns.routing_values(sums["routes"], sums["accounts"], unresolved)
    if "series" in sums:
        fields["time_series"] = sums["series"].to_dicts()
    return AnalyticsReport.model_validate(fields)


_BREAKDOWN_COLUMNS: Final[dict[Breakdown, tuple[str, ...]]] = {
    Breakdown.TICKET_TYPES: (TICKET_TYPES_TEXT,),
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


_GROUP_OF: Final = {
    "ticketTypes": Breakdown.TICKET_TYPES,
    "sources": Breakdown.SOURCES,
    "referralCodes": Breakdown.REFERRAL_CODES,
    "events": Breakdown.EVENTS,
    "deposits": Breakdown.DEPOSITS,
    "routes": Breakdown.ROUTES,
}

_FIELD_OF: Final = {
    "ticketTypes": "by_ticket_type",
    "sources": "by_source",
    "referralCodes": "by_referral_code",
    "events": "by_event",
    "deposits": "by_deposit_status",
}
"""The report's field of each grouped breakdown (routes are inside ``routing``)."""


def report_json(report: AnalyticsReport) -> dict[str, object]:
    """The JSON body: every metric, and only the breakdowns that were asked for."""
    metric_names = {field.alias or name for name, field in DerivedMetrics.model_fields.items()}
    body = report.model_dump(mode="json", by_alias=True)
    return {key: value for key, value in body.items() if key in metric_names or value is not None}
