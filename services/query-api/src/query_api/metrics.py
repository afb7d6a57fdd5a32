"""``DerivedMetrics`` over a filtered set of rows, exactly as SPEC section 3 defines them."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from otcommon.schemas import DerivedMetrics
from query_api.columns import FEES, PURCHASE_QUARTER, PURCHASED_AT, REDEEMED_AT
from query_api.engine import collected
from query_api.timezones import WEEKDAYS, LocalClock

_MILLISECONDS_PER_HOUR = 3_600_000


TOTALS_COLUMNS: Final = (
    "TotalTickets",
    "TotalAmount",
    "OrganizerAmount",
    FEES,
    "IsRefunded",
    "IsDisputed",
    "IsValid",
    "TotalScanCount",
    "TotalTicketRedeemed",
    "sourceBucket",
    PURCHASED_AT,
    REDEEMED_AT,
    PURCHASE_QUARTER,
)
"""The columns the metrics read."""


def partial_totals() -> list[pl.Expr]:
    """Sums and counts that add up across disjoint sets of rows (per-event partials sum to the whole)."""
    lag_hours = (pl.col(REDEEMED_AT) - pl.col(PURCHASED_AT)).dt.total_milliseconds() / _MILLISECONDS_PER_HOUR
    refunded = pl.col("IsRefunded")
    return [
        pl.len().alias("orders"),
        pl.col("TotalTickets").sum().alias("tickets"),
        pl.col("TotalAmount").sum().alias("gross"),
        pl.col("OrganizerAmount").sum().alias("net"),
        pl.col(FEES).sum().alias("fees"),
        refunded.sum().alias("refunds"),
        pl.col("TotalAmount").filter(refunded).sum().alias("refundAmount"),
        pl.col("IsDisputed").sum().alias("disputes"),
        pl.col("IsValid").sum().alias("valid"),
        pl.col("TotalScanCount").sum().alias("scans"),
        pl.col("TotalTicketRedeemed").sum().alias("redeemed"),
        (pl.col("sourceBucket") == "online").sum().alias("online"),
        (pl.col("sourceBucket") == "boxoffice").sum().alias("boxOffice"),
        lag_hours.sum().alias("lagHours"),
        lag_hours.count().alias("lagCount"),
    ]


def slot_plan(frame: pl.LazyFrame, clock: LocalClock, orders: pl.Expr) -> pl.LazyFrame:
    """Orders per local hour of the week (``timezones.local_key`` ``slot``): at most 168 rows, what both
    peaks are read from. ``orders`` counts a group's orders: ``pl.len()`` over rows, a sum over sums."""
    return frame.group_by(clock.key("slot").alias("slot")).agg(orders.alias("orders"))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def compute_metrics(rows: pl.DataFrame, *, time_zone: str = "UTC") -> DerivedMetrics:
    """Every metric of SPEC section 3 over ``rows``; peaks in ``time_zone``, ties to the earliest."""
    clock = LocalClock.of(time_zone, rows[PURCHASE_QUARTER])
    sums = collected(
        {"totals": rows.lazy().select(partial_totals()), "slots": slot_plan(rows.lazy(), clock, pl.len())}
    )
    return metrics_from(sums["totals"].row(0, named=True), sums["slots"])


def metrics_from(totals: dict[str, Any], slots: pl.DataFrame) -> DerivedMetrics:
    """The metrics from ``partial_totals`` and orders per local slot (``slot_plan``)."""
    return DerivedMetrics.model_validate(metric_values(totals, slots))


def metric_values(totals: dict[str, Any], slots: pl.DataFrame) -> dict[str, Any]:
    """``DerivedMetrics``' fields (by attribute name) from ``partial_totals`` and orders per local slot."""
    orders, tickets, gross = totals["orders"], totals["tickets"] or 0, totals["gross"] or 0.0
    peak_hour, peak_day = peaks_from_slots(slots)
    lag_count = totals["lagCount"] or 0
    return {
        "tickets_sold": tickets,
        "orders_count": orders,
        "gross_revenue": gross,
        "organizer_net": totals["net"] or 0.0,
        "total_fees": totals["fees"] or 0.0,
        "refund_count": totals["refunds"] or 0,
        "refund_amount": totals["refundAmount"] or 0.0,
        "refund_rate": _ratio(totals["refunds"] or 0, orders),
        "dispute_count": totals["disputes"] or 0,
        "dispute_rate": _ratio(totals["disputes"] or 0, orders),
        "valid_tickets_count": totals["valid"] or 0,
        "valid_rate": _ratio(totals["valid"] or 0, orders),
        "total_scans": totals["scans"] or 0,
        "redeemed_tickets": totals["redeemed"] or 0,
        "redemption_rate": _ratio(totals["redeemed"] or 0, tickets),
        "online_count": totals["online"] or 0,
        "box_office_count": totals["boxOffice"] or 0,
        "online_share": _ratio(totals["online"] or 0, orders),
        "avg_ticket_price": _ratio(gross, tickets),
        "avg_order_value": _ratio(gross, orders),
        "avg_redemption_lag": _ratio(totals["lagHours"] or 0.0, lag_count),
        "peak_purchase_hour": peak_hour,
        "peak_purchase_day": peak_day,
    }


def peaks_from_slots(slots: pl.DataFrame) -> tuple[int | None, str | None]:
    """The busiest local hour and weekday from orders per hour of the week (``slot_plan``); ties to the
    earliest (hour 0, Monday); None when there are no orders."""
    by_hour = [0] * 24
    by_weekday = [0] * 7
    for slot, orders in slots.select("slot", "orders").iter_rows():
        weekday, hour = divmod(slot, 24)
        by_hour[hour] += orders
        by_weekday[weekday] += orders
    if not any(by_hour):
        return None, None
    # max() keeps the first of equal counts: the earliest hour and weekday.
    hour = max(range(24), key=by_hour.__getitem__)
    weekday = max(range(7), key=by_weekday.__getitem__)
    return hour, WEEKDAYS[weekday]
