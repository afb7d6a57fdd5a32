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

from query_api.columns import BUYER, CUSTOMER_ID, PURCHASED_AT
from query_api.customers import (
    CUSTOMER_COLUMNS,
    ROW_COLUMNS,
    SORT_KEYS,
    EveryoneKeys,
    customers,
    customers_in_order,
    key_columns,
    sort_keys,
)
from query_api.pagination import (
    Page,
    PageRequest,
    SortedRun,
    fingerprint,
    paginate,
    repaired,
    sort_column,
)
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
    """What one query has computed over the current rows: its matches, sort keys and runs."""

    matching: pl.DataFrame | None  # None for a query that keeps its sort keys only
    keys: dict[str, pl.DataFrame] = field(default_factory=dict)
    runs: dict[tuple[str, bool], SortedRun] = field(default_factory=dict)
    # The whole rows of part of the current run (customers), so the next pages are slices.
    completed: tuple[SortedRun, pl.DataFrame] | None = None
    # Repairable queries only: the keys (customerIds) whose rows changed since the runs were cut.
    changed: set[str] = field(default_factory=set)
    # Answer threads asking the same customers query take turns: its keys, runs and built rows
    # are read and repaired together.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def page(self, frame: pl.DataFrame, request: PageRequest, **reading: Any) -> Page:
        """A page of ``frame`` (this query's rows), reusing and keeping the run of its order."""
        order = (reading["sortable"][request.sort], request.descending)
        page = paginate(frame, request, run=self.runs.get(order), **reading)
        if page.run is not None:
            # A few orders: dashboards switch between sorts, and each run is at most a few
            # thousand rows of a sort column and a key.
            self.runs.pop(order, None)
            self.runs[order] = page.run
            while len(self.runs) > RUNS_KEPT:
                del self.runs[next(iter(self.runs))]
        return page


@dataclass(slots=True)
class _Entry:
    query: _Query
    events: frozenset[str] | None  # the events it read; None: all of them
    positional: bool  # holds row positions, which any change moves
    repairable: bool = False  # kept across changes: its runs are repaired for the buyers changed


COMPLETED_PAGES: Final = 4
"""A page's buyers are built whole with those of the next pages (of its size), up to this many pages."""

RUNS_KEPT: Final = 4
"""Sorted runs kept per query (one per order), the least recently used going first."""

MAX_QUERIES: Final = 8
"""Queries kept per model; the least recently used goes first."""


class TableCache:
    """The queries of one read model recently asked, until rows they read change."""

    def __init__(self, model: ReadModel) -> None:
        self.everyone = EveryoneKeys(model)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        # Answers run in several threads (readside.py); changes run while none does.
        self._entries_lock = threading.Lock()
        model.on_change(self._changed)

    def query(
        self,
        key: Hashable,
        compute: Callable[[], pl.DataFrame | None],
        *,
        events: frozenset[str] | None,
        positional: bool,
        repairable: bool = False,
    ) -> _Query:
        """The cached query under ``key``, or a new one of ``compute()``."""
        with self._entries_lock:
            entry = self._entries.get(key)
        if entry is None:
            # Computed outside the lock: two threads may both compute it, over the same rows.
            entry = _Entry(_Query(compute()), events, positional, repairable)
        with self._entries_lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_QUERIES:
                self._entries.popitem(last=False)
        return entry.query

    def _changed(self, event_ids: pl.DataFrame) -> None:
        touched = frozenset(event_ids["eventId"].cast(pl.String).unique().to_list())
        for key, entry in list(self._entries.items()):
            if entry.repairable:
                entry.query.changed.update(event_ids[CUSTOMER_ID].to_list())
                entry.query.keys.clear()
                entry.query.completed = None
            elif entry.positional or entry.events is None or entry.events & touched:
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
        if query.matching is None:  # pragma: no cover - a transactions query always holds its matches
            raise AssertionError("a transactions query without its matching rows")
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
    only the buyers of the page and of the rest of its run's window are then built whole.
    The query of every buyer of every event is never dropped: after a change its sorted run is
    repaired for the buyers changed instead of selected again from every buyer.
    """
    sort_column(CUSTOMER_SORTS, request)  # an unknown sort is refused before anything is cached
    cache = table_cache(model)
    everyone = scope.allowed is None and not filters.event_ids and answers_from_partials(filters)
    query = cache.query(
        ("customers", scope, filters),
        lambda: None,
        events=_selected_events(scope, filters),
        positional=False,
        repairable=everyone,
    )
    with query.lock:
        return _customers_page_of(query, model, scope, filters, request, everyone=everyone)


def _customers_page_of(
    query: _Query,
    model: ReadModel,
    scope: EventScope,
    filters: TransactionFilter,
    request: PageRequest,
    *,
    everyone: bool,
) -> tuple[list[dict[str, Any]], Page]:
    column = sort_column(CUSTOMER_SORTS, request)
    cache = table_cache(model)
    keys = query.keys.get(column)
    if keys is None:
        if everyone:
            _repair_runs(query, lambda sorted_by: cache.everyone.keys(model, sorted_by))
            keys = cache.everyone.keys(model, column)
        else:
            keys = sort_keys(model.rows(scope, filters, columns=key_columns(column)), column)
        query.keys = {column: keys}
    page = query.page(
        keys,
        request,
        sortable=CUSTOMER_SORTS,
        key=BUYER,
        query_fingerprint=_cursor_fingerprint(scope, filters),
    )
    rows = _completed(query, page, lambda buyers: _page_customers(model, scope, filters, buyers))
    return rows.select(CUSTOMER_COLUMNS).to_dicts(), replace(page, rows=rows)


def _repair_runs(query: _Query, keys_of: Callable[[str], pl.DataFrame]) -> None:
    """The query's runs after the rows of the buyers in ``query.changed`` changed.

    ``keys_of(column)``: every buyer's keys of that sort column as they are now.
    """
    if query.changed:
        changed = pl.Series(sorted(query.changed), dtype=pl.String()).str.to_integer(
            base=16, dtype=pl.UInt128
        )
        query.runs = {
            order: repaired(run, keys_of(run.column), changed, key=BUYER) for order, run in query.runs.items()
        }
        query.changed.clear()


def _completed(query: _Query, page: Page, complete: Callable[[pl.Series], pl.DataFrame]) -> pl.DataFrame:
    """The whole rows of the page's buyers, built with those of the next pages of its run.

    The next pages of the run are then slices of what was built; a deep page builds only its window.
    """
    buyers = page.rows[BUYER]
    if page.run is None or buyers.is_empty():
        return complete(buyers)
    held = query.completed
    if held is None or held[0] is not page.run or not buyers.is_in(held[1][BUYER].implode()).all():
        run_buyers = page.run.rows[BUYER]
        # Found by comparing Series: a 128-bit key is no literal Polars takes.
        at_start = (run_buyers == buyers.head(1)).arg_true()
        window = run_buyers.slice(at_start[0] if at_start.len() else 0, COMPLETED_PAGES * buyers.len())
        held = (page.run, complete(window))
        query.completed = held
    return buyers.to_frame().join(held[1], on=BUYER, how="left", maintain_order="left")


def _page_customers(
    model: ReadModel, scope: EventScope, filters: TransactionFilter, buyers: pl.Series
) -> pl.DataFrame:
    """The whole rows of these buyers, in this order, from their rows that match the query.

    Their rows are found by key first (one integer test per row) and only those are filtered.
    """
    # Two steps: the filters then test a few rows, not every row (a search reads each row's text).
    wanted = model.frame().filter(pl.col(BUYER).is_in(buyers.implode()))
    matching = wanted.filter(scope.expression() & filters.expression()).select(ROW_COLUMNS)
    return customers_in_order(matching, buyers)


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
