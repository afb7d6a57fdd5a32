"""The transactions table and the customers table (SPEC section 4) over the read model.

A query (table, scope, filters) is kept in a ``TableCache`` with the sorted runs its pages were
cut from, so the next page, or the same page again, is a slice. A transactions query (the
positions of the rows it matches) is dropped at any change; a customers query (its buyers' sort
keys, see ``customerquery``) is repaired for the buyers a change touched.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from query_api.columns import CUSTOMER_ID, PURCHASED_AT
from query_api.customerquery import RUNS_KEPT, CustomerQuery
from query_api.customers import CUSTOMER_COLUMNS, ROW_COLUMNS, SORT_KEYS, EveryoneKeys, customers
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

CUSTOMER_SORTS: Final = SORT_KEYS
"""The customer table's sortable columns (first and last purchase sort by their instants)."""


@dataclass(slots=True)
class _Query:
    """What one transactions query has computed over the current rows: its matches, keys and runs."""

    matching: pl.DataFrame  # the positions of its rows in the model's frame
    keys: dict[str, pl.DataFrame] = field(default_factory=dict)
    runs: dict[tuple[str, bool], SortedRun] = field(default_factory=dict)
    # Two answer threads may page one query at once: the page is cut outside the lock, the runs
    # kept are updated inside it (two evictions of the same oldest run would otherwise collide).
    runs_lock: threading.Lock = field(default_factory=threading.Lock)

    def page(self, frame: pl.DataFrame, request: PageRequest, **reading: Any) -> Page:
        """A page of ``frame`` (this query's rows), reusing and keeping the run of its order."""
        order = (reading["sortable"][request.sort], request.descending)
        with self.runs_lock:
            run = self.runs.get(order)
        page = paginate(frame, request, run=run, **reading)
        if page.run is not None:
            with self.runs_lock:
                self.runs.pop(order, None)
                self.runs[order] = page.run
                while len(self.runs) > RUNS_KEPT:
                    del self.runs[next(iter(self.runs))]
        return page


@dataclass(slots=True)
class _Entry:
    query: _Query | CustomerQuery
    events: frozenset[str] | None  # the events it read; None: all of them


MAX_QUERIES: Final = 8
"""Queries kept per model; the least recently used goes first."""


class TableCache:
    """The queries of one read model recently asked.

    A transactions query is dropped at any change (it holds positions in the model's frame); a
    customers query is told which buyers changed and repairs itself when next asked.
    """

    def __init__(self, model: ReadModel) -> None:
        self.everyone = EveryoneKeys(model)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        # Answers run in several threads (readside.py); changes run while none does.
        self._entries_lock = threading.Lock()
        model.on_change(self._changed)

    def transactions_query(
        self, key: Hashable, matching: Callable[[], pl.DataFrame], *, events: frozenset[str] | None
    ) -> _Query:
        """The cached transactions query under ``key``, or a new one of ``matching()``."""
        query = self._kept(key, lambda: _Query(matching()), events)
        if not isinstance(query, _Query):  # pragma: no cover - keys name their table
            raise TypeError("a transactions key holds another table's query")
        return query

    def customers_query(
        self, key: Hashable, *, events: frozenset[str] | None, everyone: bool
    ) -> CustomerQuery:
        """The cached customers query under ``key``, or a new one (computed as its pages are asked)."""
        query = self._kept(key, lambda: CustomerQuery(everyone=everyone), events)
        if not isinstance(query, CustomerQuery):  # pragma: no cover - keys name their table
            raise TypeError("a customers key holds another table's query")
        return query

    def _kept(
        self, key: Hashable, make: Callable[[], _Query | CustomerQuery], events: frozenset[str] | None
    ) -> _Query | CustomerQuery:
        with self._entries_lock:
            entry = self._entries.get(key)
        if entry is None:
            # Made outside the lock: two threads may both compute it, over the same rows.
            entry = _Entry(make(), events)
        with self._entries_lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_QUERIES:
                self._entries.popitem(last=False)
        return entry.query

    def _changed(self, changes: pl.DataFrame) -> None:
        touched = frozenset(changes["eventId"].cast(pl.String).unique().to_list())
        customer_ids = changes[CUSTOMER_ID].to_list()
        for key, entry in list(self._entries.items()):
            if isinstance(entry.query, CustomerQuery):
                reads_touched = entry.events is None or bool(entry.events & touched)
                entry.query.rows_changed(customer_ids, touched=reads_touched)
            else:
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
    query = table_cache(model).transactions_query(
        ("transactions", scope, filters),
        lambda: model.rows(scope, filters, columns=[ROW_NUMBER]),
        events=_selected_events(scope, filters),
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
    """One page of the buyers of the transactions the caller may see that match the filters.

    The page is cut from the query's sort keys (one row per buyer: its key and the sort column);
    only the buyers of the page and of the rest of its run's window are then built whole
    (``customerquery.CustomerQuery``). A kept query is repaired for the buyers a change touched
    rather than computed again.
    """
    sort_column(CUSTOMER_SORTS, request)  # an unknown sort is refused before anything is cached
    cache = table_cache(model)
    everyone = scope.allowed is None and not filters.event_ids and answers_from_partials(filters)
    query = cache.customers_query(
        ("customers", scope, filters), events=_selected_events(scope, filters), everyone=everyone
    )
    with query.lock:
        rows, page = query.page(
            model,
            scope,
            filters,
            request,
            everyone_keys=cache.everyone,
            query_fingerprint=_cursor_fingerprint(scope, filters),
        )
    return rows.select(CUSTOMER_COLUMNS).to_dicts(), replace(page, rows=rows)


def customer_detail(
    model: ReadModel, scope: EventScope, customer_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A buyer and their transactions (newest first), or None when the caller sees none of them."""
    rows = model.frame().filter(scope.expression() & (pl.col(CUSTOMER_ID) == customer_id))
    if rows.height == 0:
        return None
    newest_first = rows.sort([PURCHASED_AT, "id"], descending=[True, False])
    customer = customers(rows.select(ROW_COLUMNS)).select(CUSTOMER_COLUMNS)
    return customer.row(0, named=True), served(newest_first)
