"""The breakdowns the dashboard draws, computed over the same filtered rows as the metrics.

An order of several ticket types counts once under each of its types, so the by-type rows can
add up to more orders than the total; every other breakdown partitions the orders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import polars as pl

from query_api.columns import PURCHASE_QUARTER, TICKET_TYPES_TEXT, TYPE_SEPARATOR
from query_api.models import BreakdownRow, RouteSummary, TimeSeriesPoint
from query_api.timezones import LocalClock, hour_key_parts

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    "ticketTypes": pl.col(TICKET_TYPES_TEXT),
    "sources": pl.col("sourceBucket"),
    "referralCodes": pl.col("referralCodeNormalized"),
    "events": pl.col("eventId"),
    "deposits": pl.col("depositStatus"),
    "routes": pl.col("stripeRouteType"),
}
"""The column each grouped breakdown groups rows by (``group_plan`` turns a few of them into keys)."""


def group_sums() -> list[pl.Expr]:
    """The sums of one breakdown group."""
    return [*_SUMS, pl.col("IsRefunded").sum().alias("refundCount")]


def grouped_rows(rows: pl.DataFrame, name: str, *, by: Sequence[str] = ()) -> pl.DataFrame:
    """The sums per key of breakdown ``name`` (and per ``by`` columns, for partials)."""
    return group_plan(rows.lazy(), name, by=by).collect(engine="streaming")


def group_plan(rows: pl.LazyFrame, name: str, *, by: Sequence[str] = ()) -> pl.LazyFrame:
    """The query of ``grouped_rows``, to be collected with others.

    Rows are grouped by a categorical column (a few distinct values); sources and ticket types are
    turned into their keys afterwards, in the small grouped frame. Ticket types are grouped by the
    order's combination of types first, then each combination's sums count under each of its types.
    """
    label = [pl.col("EventName").max().alias("label")] if name == "events" else []
    grouped = rows.group_by([*by, GROUP_KEYS[name].alias("key")]).agg(*group_sums(), *label)
    if name == "sources":
        keys = pl.col("key").cast(pl.String).replace_strict(SOURCE_KEYS, default="other")
        return _summed_again(grouped.with_columns(keys), by)
    if name == "ticketTypes":
        types = pl.col("key").cast(pl.String).str.strip_chars(TYPE_SEPARATOR).str.split(TYPE_SEPARATOR)
        each = grouped.with_columns(types).explode("key")
        # An order without a type has the empty combination: its key is null, as in the reference.
        return _summed_again(each.with_columns(pl.col("key").replace("", None)), by)
    return grouped


def _summed_again(grouped: pl.LazyFrame, by: Sequence[str]) -> pl.LazyFrame:
    """Group sums whose keys were mapped, summed again per key (two groups may now share one)."""
    return grouped.group_by([*by, "key"]).agg(pl.col(column).sum() for column in GROUP_COLUMNS)


def in_report_order(grouped: pl.LazyFrame) -> pl.LazyFrame:
    """Sums per key as the report lists them: the largest gross first (ties by key, nulls last)."""
    return grouped.sort(["grossRevenue", "key"], descending=[True, False], nulls_last=True)


def rows_of(grouped: pl.DataFrame) -> list[BreakdownRow]:
    """Breakdown rows from sums per key, in report order."""
    return [BreakdownRow.model_validate(row) for row in in_report_order(grouped.lazy()).collect().to_dicts()]


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


def top_account_plan(accounts: pl.LazyFrame) -> pl.LazyFrame:
    """The connected account with the most gross revenue (ties to the lowest id), or no row."""
    return accounts.sort(["grossRevenue", "accountId"], descending=[True, False]).head(1)


def routing_values(routes: pl.DataFrame, top_account: pl.DataFrame, unresolved: int) -> dict[str, Any]:
    """``RouteSummary``'s fields from sums per route (report order), ``top_account_plan``'s row and the
    unresolved count."""
    top = top_account.to_dicts()
    return {
        "routes": routes.to_dicts(),
        "top_connected_account": top[0] if top else None,
        "unresolved_count": unresolved,
    }


def route_summary(rows: pl.DataFrame) -> RouteSummary:
    """Platform vs connected money, the connected account with the most, and untraced payments."""
    unresolved = int(rows.select(unresolved_count()).item())
    routes = in_report_order(group_plan(rows.lazy(), "routes")).collect()
    top = top_account_plan(accounts_plan(rows.lazy())).collect()
    return RouteSummary.model_validate(routing_values(routes, top, unresolved))


def quarter_sums() -> list[pl.Expr]:
    """The sums per UTC quarter-hour kept in the partials (``series_sums`` sums them again)."""
    return list(_SUMS)


SERIES_COLUMNS: Final = ("ordersCount", "ticketsSold", "grossRevenue", "organizerNet")


def series_sums(*, of_sums: bool) -> list[pl.Expr]:
    """The sums of a time-series bucket: over rows, or ``of_sums`` over rows of ``quarter_sums``."""
    return [pl.col(name).sum() for name in SERIES_COLUMNS] if of_sums else list(_SUMS)


def series_plan(
    frame: pl.LazyFrame, clock: LocalClock, *, granularity: Granularity, sums: Sequence[pl.Expr]
) -> pl.LazyFrame:
    """Sums per local hour, day or week, named and in time order (``series_sums`` gives ``sums``).

    A local hour is named with the offset it was lived at: the hour repeated when clocks go back is
    two buckets. Days and weeks (Monday first) are named by their local date.
    """
    summed = frame.group_by(clock.key(granularity).alias("_key")).agg(*sums)
    if granularity != "hour":
        date = pl.from_epoch(pl.col("_key"), time_unit="d").dt.strftime("%Y-%m-%d")
        return summed.sort("_key").select(date.alias("bucket"), *SERIES_COLUMNS)
    local_hour, offset = hour_key_parts(pl.col("_key"))
    hours, minutes = offset.abs() // 60, offset.abs() % 60
    name = pl.format(
        "{}{}{}:{}",
        pl.from_epoch(local_hour * 3600, time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S"),
        pl.when(offset < 0).then(pl.lit("-")).otherwise(pl.lit("+")),
        hours.cast(pl.String).str.zfill(2),
        minutes.cast(pl.String).str.zfill(2),
    )
    return summed.sort(local_hour * 60 - offset).select(name.alias("bucket"), *SERIES_COLUMNS)


def time_series(rows: pl.DataFrame, *, granularity: Granularity, time_zone: str) -> list[TimeSeriesPoint]:
    """Orders, tickets, gross and net per local hour, day or week (weeks start on Monday)."""
    clock = LocalClock.of(time_zone, rows[PURCHASE_QUARTER])
    series = series_plan(rows.lazy(), clock, granularity=granularity, sums=series_sums(of_sums=False))
    return [TimeSeriesPoint.model_validate(point) for point in series.collect().to_dicts()]
