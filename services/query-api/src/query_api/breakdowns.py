"""The breakdowns the dashboard draws, computed over the same filtered rows as the metrics.

An order of several ticket types counts once under each of its types, so the by-type rows can
add up to more orders than the total; every other breakdown partitions the orders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import polars as pl

from query_api.columns import PURCHASE_QUARTER
from query_api.engine import grouped
from query_api.models import BreakdownRow, ConnectedAccount, RouteSummary, TimeSeriesPoint
from query_api.timezones import LOCAL_TIME, OFFSET_MINUTES, with_local_time

if TYPE_CHECKING:
    from collections.abc import Sequence
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


GROUP_COLUMNS: Final = ("ordersCount", "ticketsSold", "grossRevenue", "organizerNet", "refundCount")
"""The sums of each breakdown row: they add up across disjoint sets of rows."""

GROUP_KEYS: Final[dict[str, pl.Expr]] = {
    "ticketTypes": pl.col("ticketTypeList"),
    "sources": pl.col("sourceBucket").replace_strict(SOURCE_KEYS, default="other"),
    "referralCodes": pl.col("referralCodeNormalized"),
    "events": pl.col("eventId"),
    "deposits": pl.col("depositStatus"),
    "routes": pl.col("stripeRouteType"),
}
"""The key of each grouped breakdown (ticket types: one group per type of the order)."""


def group_sums() -> list[pl.Expr]:
    """The sums of one breakdown group."""
    return [*_SUMS, pl.col("IsRefunded").sum().alias("refundCount")]


def grouped_rows(rows: pl.DataFrame, name: str, *, by: Sequence[str] = ()) -> pl.DataFrame:
    """The sums per key of breakdown ``name`` (and per ``by`` columns, for partials)."""
    return group_plan(rows.lazy(), name, by=by).collect(engine="streaming")


def group_plan(rows: pl.LazyFrame, name: str, *, by: Sequence[str] = ()) -> pl.LazyFrame:
    """The query of ``grouped_rows``, to be collected with others."""
    if name == "ticketTypes":
        rows = rows.explode("ticketTypeList", empty_as_null=True)
    label = [pl.col("EventName").max().alias("label")] if name == "events" else []
    return rows.group_by([*by, GROUP_KEYS[name].alias("key")]).agg(*group_sums(), *label)


def rows_of(grouped: pl.DataFrame) -> list[BreakdownRow]:
    """Breakdown rows from sums per key, the largest gross first (ties by key, nulls last)."""
    ordered = grouped.sort(["grossRevenue", "key"], descending=[True, False], nulls_last=True)
    return [BreakdownRow.model_validate(row) for row in ordered.to_dicts()]


def by_ticket_type(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per normalized ticket type (null: orders without a type)."""
    return rows_of(grouped_rows(rows, "ticketTypes"))


def by_source(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per source: online, boxOffice, other."""
    return rows_of(grouped_rows(rows, "sources"))


def by_referral_code(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per normalized referral code (null: orders without one)."""
    return rows_of(grouped_rows(rows, "referralCodes"))


def by_event(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per event, labelled with its name (the tour table)."""
    return rows_of(grouped_rows(rows, "events"))


def by_deposit_status(rows: pl.DataFrame) -> list[BreakdownRow]:
    """Orders per deposit status: paid, pending, failed, not_traceable (null: not known yet)."""
    return rows_of(grouped_rows(rows, "deposits"))


def connected_accounts(rows: pl.DataFrame, *, by: Sequence[str] = ()) -> pl.DataFrame:
    """Orders and gross per connected account (per ``by`` columns too, for partials)."""
    return accounts_plan(rows.lazy(), by=by).collect(engine="streaming")


def accounts_plan(rows: pl.LazyFrame, *, by: Sequence[str] = ()) -> pl.LazyFrame:
    """The query of ``connected_accounts``, to be collected with others."""
    connected = rows.filter(
        (pl.col("stripeRouteType") == "connected") & pl.col("stripeDestinationAccountId").is_not_null()
    )
    return connected.group_by([*by, pl.col("stripeDestinationAccountId").alias("accountId")]).agg(
        pl.col("stripeDestinationAccountName").max().alias("accountName"),
        pl.len().alias("ordersCount"),
        pl.col("TotalAmount").sum().alias("grossRevenue"),
    )


def unresolved_count() -> pl.Expr:
    """Payments the enricher could not trace."""
    return (pl.col("enrichmentState") == "unresolved").sum().alias("unresolved")


def routes_from(routes: pl.DataFrame, accounts: pl.DataFrame, unresolved: int) -> RouteSummary:
    """The route summary from sums per route, sums per connected account and the unresolved count."""
    top = accounts.sort(["grossRevenue", "accountId"], descending=[True, False]).head(1).to_dicts()
    return RouteSummary(
        routes=rows_of(routes),
        top_connected_account=ConnectedAccount.model_validate(top[0]) if top else None,
        unresolved_count=unresolved,
    )


def route_summary(rows: pl.DataFrame) -> RouteSummary:
    """Platform vs connected money, the connected account with the most, and untraced payments."""
    unresolved = int(rows.select(unresolved_count()).item())
    return routes_from(grouped_rows(rows, "routes"), connected_accounts(rows), unresolved)


def quarter_sums() -> list[pl.Expr]:
    """The sums per UTC quarter-hour that time series are read from."""
    return list(_SUMS)


def time_series(rows: pl.DataFrame, *, granularity: Granularity, time_zone: str) -> list[TimeSeriesPoint]:
    """Orders, tickets, gross and net per local hour, day or week (weeks start on Monday)."""
    quarters = grouped(rows, [PURCHASE_QUARTER], *quarter_sums())
    return series_from_quarters(quarters, granularity=granularity, time_zone=time_zone)


def series_from_quarters(
    quarters: pl.DataFrame, *, granularity: Granularity, time_zone: str
) -> list[TimeSeriesPoint]:
    """The time series from sums per UTC quarter-hour (``quarter_sums``), of one set of rows or summed."""
    local = pl.col(LOCAL_TIME)
    if granularity == "hour":
        # A local hour is named with its offset: the repeated hour when clocks go back is two hours.
        keys = [local.dt.truncate("1h").alias("start"), pl.col(OFFSET_MINUTES)]
    elif granularity == "day":
        keys = [local.dt.date().alias("start"), pl.lit(0).alias(OFFSET_MINUTES)]
    else:
        monday = local.dt.date() - pl.duration(days=local.dt.weekday() - 1)
        keys = [monday.alias("start"), pl.lit(0).alias(OFFSET_MINUTES)]
    instant = pl.col("start").cast(pl.Datetime("ms")) - pl.duration(minutes=pl.col(OFFSET_MINUTES))
    ordered = (
        with_local_time(quarters.lazy().filter(pl.col("ordersCount") > 0), time_zone)
        .group_by(keys)
        .agg(*(pl.col(name).sum() for name in ("ordersCount", "ticketsSold", "grossRevenue", "organizerNet")))
        .sort(instant)
        .collect()
    )
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
