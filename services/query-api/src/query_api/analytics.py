"""The answer of ``/api/analytics``: the metrics of the filtered rows and the breakdowns asked for."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from otcommon.schemas import DerivedMetrics
from query_api import breakdowns
from query_api.metrics import compute_metrics
from query_api.models import (  # noqa: TC001 - pydantic resolves the fields at run time
    BreakdownRow,
    Granularity,
    RouteSummary,
    TimeSeriesPoint,
)

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
    """Metrics and the requested breakdowns over the rows the caller may see that match the filters."""
    rows = model.rows(scope, filters)
    metrics = compute_metrics(rows, time_zone=time_zone)
    report = AnalyticsReport.model_validate(metrics.model_dump())
    wanted = set(include)
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


def report_json(report: AnalyticsReport) -> dict[str, object]:
    """The JSON body: every metric, and only the breakdowns that were asked for."""
    metric_names = {field.alias or name for name, field in DerivedMetrics.model_fields.items()}
    body = report.model_dump(mode="json", by_alias=True)
    return {key: value for key, value in body.items() if key in metric_names or value is not None}
