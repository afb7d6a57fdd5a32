"""The breakdowns the dashboard draws, computed over the same filtered rows as the metrics.

An order of several ticket types counts once under each of its types, so the by-type rows can
add up to more orders than the total; every other breakdown partitions the orders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import polars as pl

from query_api.columns import PURCHASE_QUARTER
from query_api.models import BreakdownRow, ConnectedAccount, RouteSummary, TimeSeriesPoint
from query_api.timezones import LOCAL_TIME, OFFSET_MINUTES, with_local_time

if TYPE_CHECKING:
    from datetime import datetime

    from query_api.models import Granularity

SOURCE_KEYS: Final = {"online": "online", "boxoffice": "boxOffice", "other": "other"}
"""Stored source buckets as the API spells them (the ``source`` filter's values)."""

_SUMS: Final = (
    pl.len().alias("ordersCount"),
    pl.col("TotalTickets").sum().alias("ticketsSold"),
    pl.col("TotalAmount").sum().alias("grossRevenue"),
    pl.col("OrganizerAmount").sum().alias("organizerNet"),
)


def _grouped(rows: pl.DataFrame, key: pl.Expr, *, label: pl.Expr | None = None) -> list[BreakdownRow]:
    extra = [label.alias("label")] if label is not None else []
    grouped = rows.group_by(key.alias("key")).agg(
        *_SUMS, pl.col("IsRefunded").sum().alias("refundCount"), *extra
    )
    ordered = grouped.sort(["grossRevenue", "key"], descending=[True, False], nulls_last=True)
    return [BreakdownRow.model_validate(row) for row in ordered.to_dicts()]


def by_ticket_type(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per normalized ticket type (null: orders without a type)."""
    return _grouped(rows.explode("ticketTypeList", empty_as_null=True), pl.col("ticketTypeList"))


def by_source(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per source: online, boxOffice, other."""
    return _grouped(rows, pl.col("sourceBucket").replace_strict(SOURCE_KEYS, default="other"))


def by_referral_code(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per normalized referral code (null: orders without one)."""
    return _grouped(rows, pl.col("referralCodeNormalized"))


def by_event(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per event, labelled with its name (the tour table)."""
    return _grouped(rows, pl.col("eventId"), label=pl.col("EventName").max())


def by_deposit_status(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per deposit status: paid, pending, failed, not_traceable (null: not known yet)."""
    return _grouped(rows, pl.col("depositStatus"))


def route_summary(rows: pl.DataFrame) -> RouteSummary:
    """Platform vs connected money, the connected account with the most, and untraced payments."""
    connected = rows.filter(pl.col("stripeRouteType") == "connected").filter(
        pl.col("stripeDestinationAccountId").is_not_null()
    )
    accounts = connected.group_by(pl.col("stripeDestinationAccountId").alias("accountId")).agg(
        pl.col("stripeDestinationAccountName").max().alias("accountName"),
        pl.len().alias("ordersCount"),
        pl.col("TotalAmount").sum().alias("grossRevenue"),
    )
    top = accounts.sort(["grossRevenue", "accountId"], descending=[True, False]).head(1).to_dicts()
    unresolved = rows.filter(pl.col("enrichmentState") == "unresolved").height
    return RouteSummary(
        routes=_grouped(rows, pl.col("stripeRouteType")),
        top_connected_account=ConnectedAccount.model_validate(top[0]) if top else None,
        unresolved_count=unresolved,
    )


def time_series(rows: pl.DataFrame, *, granularity: Granularity, time_zone: str) -> list[TimeSeriesPoint]:
    """Orders, tickets, gross and net per local hour, day or week (weeks start on Monday)."""
    quarters = with_local_time(rows.group_by(PURCHASE_QUARTER).agg(*_SUMS), time_zone)
    local = pl.col(LOCAL_TIME)
    if granularity == "hour":
        # A local hour is named with its offset: the repeated hour when clocks go back is two hours.
        keys = [local.dt.truncate("1h").alias("start"), pl.col(OFFSET_MINUTES)]
    elif granularity == "day":
        keys = [local.dt.date().alias("start"), pl.lit(0).alias(OFFSET_MINUTES)]
    else:
        monday = local.dt.date() - pl.duration(days=local.dt.weekday() - 1)
        keys = [monday.alias("start"), pl.lit(0).alias(OFFSET_MINUTES)]
    buckets = quarters.group_by(keys).agg(
        pl.col(name).sum() for name in ("ordersCount", "ticketsSold", "grossRevenue", "organizerNet")
    )
    instant = pl.col("start").cast(pl.Datetime("ms")) - pl.duration(minutes=pl.col(OFFSET_MINUTES))
    ordered = buckets.sort(instant)
    return [
        TimeSeriesPoint(
            bucket=_bucket_name(row["start"], row[OFFSET_MINUTES], granularity=granularity),
            orders_count=row["ordersCount"],
            tickets_sold=row["ticketsSold"],
            gross_revenue=row["grossRevenue"],
            organizer_net=row["organizerNet"],
        )
        for row in ordered.iter_rows(named=True)
    ]


def _bucket_name(start: datetime, offset_minutes: int, *, granularity: Granularity) -> str:
    if granularity != "hour":
        return start.isoformat()
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{start.isoformat(timespec='seconds')}{sign}{hours:02d}:{minutes:02d}"
