"""The transactions table and the customers table (SPEC section 4) over the read model.

A query (table, scope, filters) is computed once per state of the rows it reads: the transactions
it matches, or its customer table, are kept in a ``TableCache`` with the sorted runs its pages
were cut from, so the next page, or the same page again, is a slice. Entries are dropped when
rows of their events change (every transactions entry on any change: it holds positions in the
model's frame).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from query_api.columns import CUSTOMER_ID, PURCHASED_AT
from query_api.customers import ROW_COLUMNS, CustomerPartials, customers, customers_of
from query_api.pagination import Page, PageRequest, SortedRun, fingerprint, paginate, sort_column
from query_api.readmodel import ROW_NUMBER, served
from query_api.rollups import answers_from_partials

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from query_api.filters import TransactionFilter
    from query_api.readmodel import ReadModel
    from query_api.scope import EventScope

TRANSACTION_SORTS: Final = {
    name: name
    for name in (
        "PurchaseDate",
        "EventName",
        "eventId",
        "ticketId",
        "Name",
        "Email",
        "Phone",
        "TicketTypes",
        "TotalTickets",
        "TotalAmount",
        "OrganizerAmount",
        "PurchaseFrom",
        "IsRefunded",
        "IsDisputed",
        "IsValid",
        "ReferralCode",
        "PaymentID",
        "TotalScanCount",
        "TotalTicketRedeemed",
        "TicketRedemptionDateTime",
        "stripeRouteType",
        "depositStatus",
        "depositDate",
    )
}
"""The sortable columns of the transaction table (fixed-width UTC timestamps sort as text)."""

CUSTOMER_SORTS: Final = {
    name: name
    for name in (
        "name",
        "email",
        "phone",
        "firstPurchase",
        "lastPurchase",
        "orders",
        "tickets",
        "totalSpent",
        "redeemedTickets",
    )
}
"""The customer table's sortable columns."""


@dataclass(slots=True)
class _Query:
    """What one query has computed over the current rows: its matches, sort keys and runs."""

    matching: pl.DataFrame
    keys: dict[str, pl.DataFrame] = field(default_factory=dict)
    runs: dict[tuple[str, bool], SortedRun] = field(default_factory=dict)

    def page(self, frame: pl.DataFrame, request: PageRequest, **reading: Any) -> Page:
        """A page of ``frame`` (this query's rows), reusing and keeping the run of its order."""
        order = (reading["sortable"][request.sort], request.descending)
        page = paginate(frame, request, run=self.runs.get(order), **reading)
        if page.run is not None:
            self.runs = {order: page.run}  # one order at a time: the table shows one
        return page


@dataclass(slots=True)
class _Entry:
    query: _Query
    events: frozenset[str] | None  # the events it read; None: all of them
    positional: bool  # holds row positions, which any change moves


MAX_QUERIES: Final = 8
"""Queries kept per model; the least recently used goes first."""


class TableCache:
    """The queries of one read model recently asked, until rows they read change."""

    def __init__(self, model: ReadModel) -> None:
        self.partials = CustomerPartials(model)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        # Answers run in several threads (readside.py); changes run while none does.
        self._entries_lock = threading.Lock()
        model.on_change(self._changed)

    def query(
        self,
        key: Hashable,
        compute: Callable[[], pl.DataFrame],
        *,
        events: frozenset[str] | None,
        positional: bool,
    ) -> _Query:
        """The cached query under ``key``, or a new one of ``compute()``."""
        with self._entries_lock:
            entry = self._entries.get(key)
        if entry is None:
            # Computed outside the lock: two threads may both compute it, over the same rows.
            entry = _Entry(_Query(compute()), events, positional)
        with self._entries_lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_QUERIES:
                self._entries.popitem(last=False)
        return entry.query

    def _changed(self, event_ids: pl.DataFrame) -> None:
        touched = frozenset(event_ids["eventId"].cast(pl.String).unique().to_list())
        for key, entry in list(self._entries.items()):
            if entry.positional or entry.events is None or entry.events & touched:
                del self._entries[key]


_CACHES: weakref.WeakKeyDictionary[ReadModel, TableCache] = weakref.WeakKeyDictionary()


_CACHES_LOCK = threading.Lock()


def table_cache(model: ReadModel) -> TableCache:
    """The table cache of a read model (made on first use; it goes with the model)."""
    with _CACHES_LOCK:  # made once even when two answer threads ask first
        cache = _CACHES.get(model)
        if cache is None:
            cache = _CACHES[model] = TableCache(model)
        return cache


def _selected_events(scope: EventScope, filters: TransactionFilter) -> frozenset[str] | None:
    """The events a query can read rows of; None when any event."""
    if filters.event_ids:
        wanted = frozenset(filters.event_ids)
        return wanted if scope.allowed is None else wanted & scope.allowed
    return scope.allowed


def _cursor_fingerprint(scope: EventScope, filters: TransactionFilter) -> str:
    # Sorted, so that every replica (each with its own string hashing) accepts the same cursor.
    allowed = None if scope.allowed is None else sorted(scope.allowed)
    return fingerprint(allowed, filters)


def transactions_page(
    model: ReadModel, scope: EventScope, filters: TransactionFilter, request: PageRequest
) -> tuple[list[dict[str, Any]], Page]:
    """One page of the transactions the caller may see that match the filters.

    The positions of the matching rows are kept per query; a page selects the first rows of the
    order from their sort column and id only, then takes the page's rows whole by position.
    """
    column = sort_column(TRANSACTION_SORTS, request)
    query = table_cache(model).query(
        ("transactions", scope, filters),
        lambda: model.rows(scope, filters, columns=[ROW_NUMBER]),
        events=_selected_events(scope, filters),
        positional=True,
    )
    frame = model.frame()
    keys = query.keys.get(column)
    if keys is None:
        positions = query.matching[ROW_NUMBER]
        if positions.len() == frame.height:  # every row matches: no gather
            keys = frame.select(column, "id").with_row_index(ROW_NUMBER)
        else:
            keys = frame.select(column, "id")[positions].with_columns(positions)
        query.keys = {column: keys}
    page = query.page(
        keys,
        request,
        sortable=TRANSACTION_SORTS,
        key="id",
        query_fingerprint=_cursor_fingerprint(scope, filters),
    )
    rows = frame[page.rows[ROW_NUMBER]]
    return served(rows), replace(page, rows=rows)


def customers_page(
    model: ReadModel, scope: EventScope, filters: TransactionFilter, request: PageRequest
) -> tuple[list[dict[str, Any]], Page]:
    """One page of the buyers of the transactions the caller may see that match the filters."""
    sort_column(CUSTOMER_SORTS, request)
    cache = table_cache(model)
    query = cache.query(
        ("customers", scope, filters),
        lambda: _customer_table(model, cache.partials, scope, filters),
        events=_selected_events(scope, filters),
        positional=False,
    )
    page = query.page(
        query.matching,
        request,
        sortable=CUSTOMER_SORTS,
        key="id",
        query_fingerprint=_cursor_fingerprint(scope, filters),
    )
    return page.rows.to_dicts(), page


def _customer_table(
    model: ReadModel, partials: CustomerPartials, scope: EventScope, filters: TransactionFilter
) -> pl.DataFrame:
    """The customers of a query: merged from per-event partials when it selects whole events."""
    if answers_from_partials(filters):
        if scope.allowed is None and not filters.event_ids:
            return partials.everyone(model)
        events = scope.expression()
        if filters.event_ids:
            events = events & pl.col("eventId").is_in(list(filters.event_ids))
        return customers_of(partials.of_events(model, events))
    return customers(model.rows(scope, filters, columns=ROW_COLUMNS))


def customer_detail(
    model: ReadModel, scope: EventScope, customer_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A buyer and their transactions (newest first), or None when the caller sees none of them."""
    rows = model.frame().filter(scope.expression() & (pl.col(CUSTOMER_ID) == customer_id))
    if rows.height == 0:
        return None
    newest_first = rows.sort([PURCHASED_AT, "id"], descending=[True, False])
    return customers(rows.select(ROW_COLUMNS)).row(0, named=True), served(newest_first)
