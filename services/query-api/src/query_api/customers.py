"""The customer table (SPEC section 4): one row per buyer, built from partials per event and buyer.

A buyer's columns merge across any split of their orders: counts and sums add, first and last
purchase are a minimum and a maximum, the flags an "any", the events a union, and the latest
name, email and phone are the greatest of their "picks" (the purchase instant, the order's id and
the value in one text that sorts by instant, then id). So the table of a set of events is the
merge of each event's partials, and ``CustomerPartials`` keeps those per event, rebuilding an
event's partials only after one of its rows changed (as ``rollups.EventRollups`` does for the
metrics). Filters on rows (dates, types, flags, search) build the partials of the matching rows.
No step sorts the rows or runs per buyer, so every aggregation streams.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

import polars as pl

from query_api.columns import CUSTOMER_ID, PURCHASED_AT
from query_api.engine import grouped

if TYPE_CHECKING:
    from collections.abc import Sequence

    from query_api.readmodel import ReadModel

EVENT: Final = "eventId"
ROW_COLUMNS: Final = (
    CUSTOMER_ID,
    "id",
    PURCHASED_AT,
    "Name",
    "Email",
    "Phone",
    "PurchaseDate",
    "TotalTickets",
    "TotalAmount",
    "TotalTicketRedeemed",
    "IsRefunded",
    "IsDisputed",
    EVENT,
)
"""The columns of the transactions a customer row is built from."""

LATEST: Final = {"name": "Name", "email": "Email", "phone": "Phone"}
"""The customer columns that hold a buyer's most recent non-empty value of a transaction field."""

_PICK_SEPARATOR: Final = "\x00"
# Purchase instants as fixed-width text: milliseconds since 1970, shifted so that any instant
# Polars can hold before 1970 stays positive, then zero-padded, so text order is time order.
_INSTANT_SHIFT: Final = 10**15
_INSTANT_WIDTH: Final = 17


_PICK_PREFIX: Final = "_pickPrefix"


def _pick_prefix() -> pl.Expr:
    """The instant and id part of a row's picks, computed once for its three picks."""
    instant = (pl.col(PURCHASED_AT).dt.epoch("ms") + _INSTANT_SHIFT).cast(pl.String).str.zfill(_INSTANT_WIDTH)
    return pl.concat_str([instant, pl.col("id"), pl.lit(_PICK_SEPARATOR)]).alias(_PICK_PREFIX)


def _pick(field: str) -> pl.Expr:
    """Instant, id and value in one text whose maximum is the latest non-empty value (null if none)."""
    value = pl.col(field)
    present = value.is_not_null() & (value.str.strip_chars() != "")
    return pl.when(present).then(pl.concat_str([pl.col(_PICK_PREFIX), value]))


def _picked(column: str) -> pl.Expr:
    """The value a pick carries (ids never hold the separator, a NUL)."""
    return pl.col(column).str.splitn(_PICK_SEPARATOR, 2).struct.field("field_1").alias(column)


def partials_of(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per event and buyer of these transactions (which need only ``ROW_COLUMNS``)."""
    picks = (
        rows.lazy()
        .with_columns(_pick_prefix())
        .select(
            EVENT,
            # A categorical (one mapping for the whole process): merging groups by a 4-byte code
            # instead of hashing a 32-character id per partial.
            pl.col(CUSTOMER_ID).cast(pl.Categorical),
            "PurchaseDate",
            "TotalTickets",
            "TotalAmount",
            "TotalTicketRedeemed",
            "IsRefunded",
            "IsDisputed",
            *(_pick(field).alias(column) for column, field in LATEST.items()),
        )
    )
    return grouped(
        picks,
        [EVENT, CUSTOMER_ID],
        pl.len().cast(pl.Int64).alias("orders"),
        pl.col("TotalTickets").sum().alias("tickets"),
        pl.col("TotalAmount").sum().alias("totalSpent"),
        pl.col("TotalTicketRedeemed").sum().alias("redeemedTickets"),
        pl.col("PurchaseDate").min().alias("firstPurchase"),
        pl.col("PurchaseDate").max().alias("lastPurchase"),
        pl.col("IsRefunded").any().alias("refunded"),
        pl.col("IsDisputed").any().alias("disputed"),
        *(pl.col(column).max() for column in LATEST),
    )


def customers_of(partials: pl.DataFrame) -> pl.DataFrame:
    """The customer table of these partials: one row per buyer, in the columns of SPEC section 4."""
    merged = grouped(
        partials,
        [pl.col(CUSTOMER_ID).alias("id")],
        *(pl.col(column).max() for column in LATEST),
        pl.col("firstPurchase").min(),
        pl.col("lastPurchase").max(),
        pl.col("orders").sum(),
        pl.col("tickets").sum(),
        pl.col("totalSpent").sum(),
        pl.col("redeemedTickets").sum(),
        pl.col("refunded").any(),
        pl.col("disputed").any(),
        # One partial per event and buyer: the buyer's events are its partials' events.
        pl.col(EVENT).alias("events"),
    )
    # The id as text again: pages break ties by id, and comparing categoricals looks up their text.
    return merged.with_columns(
        pl.col("id").cast(pl.String), *(_picked(column) for column in LATEST), pl.col("events").list.sort()
    )


def customers(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per buyer (by ``customerId``) of these transactions."""
    return customers_of(partials_of(rows))


class CustomerPartials:
    """The partials of each event of a read model, rebuilt for the buyers and events a change touched.

    The read model names the event and buyer of every row added, replaced or removed; only those
    buyers' partials in those events are built again, from their rows. Held as one frame per
    event, so a change copies that event's partials only. It also keeps the customer table of
    every event, merged again after a change only for the buyers the change touched. It holds
    no reference to the model (the model's listeners hold this), so a cache keyed weakly by the
    model can keep it.
    """

    def __init__(self, model: ReadModel) -> None:
        self._by_event: dict[str, pl.DataFrame] | None = None
        self._empty = partials_of(model.frame().head(0).select(ROW_COLUMNS))
        self._everyone: pl.DataFrame | None = None
        self._stale: dict[str, set[str]] = {}  # the buyers whose partials changed, per event
        # Answers run in several threads (readside.py): one at a time brings the partials up to date.
        self._refreshing = threading.Lock()
        model.on_change(self._invalidate)

    def of_events(self, model: ReadModel, events: pl.Expr) -> pl.DataFrame:
        """The partials of the events the predicate on ``eventId`` selects."""
        with self._refreshing:
            partials = self._current(model)
        return partials.filter(events)

    def everyone(self, model: ReadModel) -> pl.DataFrame:
        """The customer table of every event."""
        with self._refreshing:
            partials = self._current(model)
            if self._everyone is None:
                self._everyone = customers_of(partials)
            return self._everyone

    def estimated_mb(self) -> float:
        """The memory the partials and the all-events table take (Polars' estimate)."""
        held = [*(self._by_event or {}).values(), *([] if self._everyone is None else [self._everyone])]
        return sum(frame.estimated_size("mb") for frame in held)

    def _current(self, model: ReadModel) -> pl.DataFrame:
        frame = model.frame()
        if self._by_event is None:
            self._by_event = {}
            self._replace(partials_of(frame.lazy().select(ROW_COLUMNS)), events=())
        elif self._stale:
            events, buyers = sorted(self._stale), sorted(set().union(*self._stale.values()))
            codes = pl.Series(buyers, dtype=pl.String()).cast(pl.Categorical)
            changed = frame.lazy().filter(pl.col(EVENT).is_in(events) & pl.col(CUSTOMER_ID).is_in(buyers))
            self._replace(partials_of(changed.select(ROW_COLUMNS)), events=events, buyers=codes)
            if self._everyone is not None:
                self._everyone = _merged_again(self._everyone, self._all(), codes)
        self._stale.clear()
        return self._all()

    def _replace(
        self, partials: pl.DataFrame, *, events: Sequence[str], buyers: pl.Series | None = None
    ) -> None:
        """Hold ``partials`` per event, in place of those of ``buyers`` (all with None) in ``events``."""
        if self._by_event is None:  # pragma: no cover - called once the per-event frames exist
            raise AssertionError("no partials held yet")
        for event in events:
            held = self._by_event.pop(event, None)
            if held is not None and buyers is not None:
                kept = held.filter(~pl.col(CUSTOMER_ID).to_physical().is_in(buyers.to_physical()))
                if kept.height:
                    self._by_event[event] = kept
        for (event, *_), event_partials in partials.partition_by(EVENT, as_dict=True).items():
            held = self._by_event.get(str(event))
            merged = event_partials if held is None else pl.concat([held, event_partials], rechunk=True)
            self._by_event[str(event)] = merged

    def _all(self) -> pl.DataFrame:
        if not self._by_event:
            return self._empty
        return pl.concat(self._by_event.values(), rechunk=False)

    def _invalidate(self, changes: pl.DataFrame) -> None:
        if self._by_event is not None:
            events = changes[EVENT].cast(pl.String).to_list()
            for event, buyer in zip(events, changes[CUSTOMER_ID].to_list(), strict=True):
                self._stale.setdefault(event, set()).add(buyer)


def _merged_again(table: pl.DataFrame, partials: pl.DataFrame, buyers: pl.Series) -> pl.DataFrame:
    """``table`` with the rows of ``buyers`` merged again from ``partials`` (which may have none)."""
    codes = buyers.to_physical().unique()
    again = customers_of(partials.filter(pl.col(CUSTOMER_ID).to_physical().is_in(codes)))
    kept = table.filter(~pl.col("id").is_in(buyers.cast(pl.String).unique()))
    return pl.concat([kept, again])
