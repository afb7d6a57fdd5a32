"""``DerivedMetrics`` over a filtered set of rows, exactly as SPEC section 3 defines them."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from otcommon.schemas import DerivedMetrics
from query_api.columns import FEES, PURCHASE_QUARTER, PURCHASED_AT, REDEEMED_AT
from query_api.engine import grouped, selected
from query_api.timezones import LOCAL_TIME, WEEKDAYS, with_local_time

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


def orders_per_quarter() -> pl.Expr:
    """Orders per UTC quarter-hour (grouped by ``PURCHASE_QUARTER``): what the peaks are read from."""
    return pl.len().alias("orders")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def compute_metrics(rows: pl.DataFrame, *, time_zone: str = "UTC") -> DerivedMetrics:
    """Every metric of SPEC section 3 over ``rows``; peaks in ``time_zone``, ties to the earliest."""
    totals = selected(rows, *partial_totals()).row(0, named=True)
    quarters = grouped(rows, [PURCHASE_QUARTER], orders_per_quarter())
    return metrics_from(totals, quarters, time_zone=time_zone)


def metrics_from(totals: dict[str, Any], quarters: pl.DataFrame, *, time_zone: str) -> DerivedMetrics:
    """The metrics from ``partial_totals`` and orders per quarter-hour, of one set of rows or summed."""
    orders, tickets, gross = totals["orders"], totals["tickets"] or 0, totals["gross"] or 0.0
    peak_hour, peak_day = peaks_from_quarters(quarters, time_zone=time_zone)
    lag_count = totals["lagCount"] or 0
    return DerivedMetrics(
        tickets_sold=tickets,
        orders_count=orders,
        gross_revenue=gross,
        organizer_net=totals["net"],
        total_fees=totals["fees"],
        refund_count=totals["refunds"],
        refund_amount=totals["refundAmount"],
        refund_rate=_ratio(totals["refunds"], orders),
        dispute_count=totals["disputes"],
        dispute_rate=_ratio(totals["disputes"], orders),
        valid_tickets_count=totals["valid"],
        valid_rate=_ratio(totals["valid"], orders),
        total_scans=totals["scans"],
        redeemed_tickets=totals["redeemed"],
        redemption_rate=_ratio(totals["redeemed"], tickets),
        online_count=totals["online"],
        box_office_count=totals["boxOffice"],
        online_share=_ratio(totals["online"], orders),
        avg_ticket_price=_ratio(gross, tickets),
        avg_order_value=_ratio(gross, orders),
        avg_redemption_lag=_ratio(totals["lagHours"] or 0.0, lag_count),
        peak_purchase_hour=peak_hour,
        peak_purchase_day=peak_day,
    )


def purchase_peaks(rows: pl.DataFrame, *, time_zone: str) -> tuple[int | None, str | None]:
    """The local hour (0-23) and weekday with the most orders; None for no rows."""
    return peaks_from_quarters(grouped(rows, [PURCHASE_QUARTER], orders_per_quarter()), time_zone=time_zone)


def peaks_from_quarters(quarters: pl.DataFrame, *, time_zone: str) -> tuple[int | None, str | None]:
    """The busiest local hour and weekday from orders per UTC quarter-hour; None when no orders.

    One small query counts orders per (local hour, weekday), at most 168 rows; both peaks are read
    from those (ties to the earliest hour and to Monday).
    """
    local = pl.col(LOCAL_TIME)
    per_slot = (
        with_local_time(quarters.lazy().filter(pl.col("orders") > 0), time_zone)
        .group_by(local.dt.hour().alias("hour"), local.dt.weekday().alias("weekday"))
        .agg(pl.col("orders").sum())
        .collect()
    )
    if per_slot.height == 0:
        return None, None
    by_hour: dict[int, int] = {}
    by_weekday: dict[int, int] = {}
    for hour, weekday, orders in per_slot.iter_rows():
        by_hour[hour] = by_hour.get(hour, 0) + orders
        by_weekday[weekday] = by_weekday.get(weekday, 0) + orders
    hour = min(by_hour, key=lambda key: (-by_hour[key], key))
    weekday = min(by_weekday, key=lambda key: (-by_weekday[key], key))
    return hour, WEEKDAYS[weekday - 1]
