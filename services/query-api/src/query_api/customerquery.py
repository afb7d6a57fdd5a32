"""What one customers query (scope, filters) keeps between its pages and across changes.

A query keeps the sort keys of its buyers (one row per buyer: the key and the sort column), the
sorted runs its pages were cut from, and the whole rows of the buyers of the last pages served.
A change does not drop them: it names the buyers whose rows changed, and at the next question
only those buyers' rows are read again (one integer test per row, then the filters on their few
rows), their keys replaced and the runs repaired (``pagination.repaired``). The query of every
buyer of every event reads its keys from ``EveryoneKeys`` instead, which repairs itself the same way.

Between changes, a query also keeps where its matching rows are in the model's frame, so the
buyers of a page are built from their own rows without reading every row again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

import polars as pl

from query_api.columns import BUYER
from query_api.customers import CUSTOMER_COLUMNS, ROW_COLUMNS, SORT_KEYS, customers, key_columns, sort_keys
from query_api.pagination import Page, PageRequest, SortedRun, paginate, repaired, sort_column
from query_api.readmodel import ROW_NUMBER

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from query_api.customers import EveryoneKeys
    from query_api.filters import TransactionFilter
    from query_api.readmodel import ReadModel
    from query_api.scope import EventScope

COMPLETED_PAGES: Final = 4
"""A page's buyers are built whole with those of the next pages (of its size), up to this many pages."""

BUILT_KEPT: Final = 4_000
"""Buyers whose whole rows a query keeps besides its last window (at most ``COMPLETED_PAGES`` of 500)."""

RUNS_KEPT: Final = 4
"""Sorted runs kept per query (one per order), the least recently used going first."""

REPAIR_LIMIT: Final = 20_000
"""Buyers changed since a query was last asked beyond which it is computed again rather than repaired
(and its list of changed buyers stops growing)."""

_KEYS_PIECES: Final = 16
"""Repaired keys are made contiguous again when they are made of more pieces than this."""


class CustomerQuery:
    """The keys, runs and built rows of one customers query over the current rows.

    ``everyone``: the query of every buyer of every event, whose keys ``EveryoneKeys`` keeps.
    ``built_kept``: buyers whose whole rows are kept beyond those of the last page's window;
    ``repair_limit``: changed buyers beyond which the query is computed again (``REPAIR_LIMIT``).
    Answer threads asking the same query take turns (``lock``): its state is read and repaired
    together. Changes run while no answer does (``readgate``), so ``rows_changed`` takes no lock.
    """

    def __init__(
        self, *, everyone: bool, built_kept: int = BUILT_KEPT, repair_limit: int = REPAIR_LIMIT
    ) -> None:
        self.everyone = everyone
        self._built_kept = built_kept
        self._repair_limit = repair_limit
        self.lock = threading.Lock()
        self._column: str | None = None
        self._keys: pl.DataFrame | None = None  # BUYER and the sort column (not for ``everyone``)
        self._runs: dict[tuple[str, bool], SortedRun] = {}
        self._built: pl.DataFrame | None = None  # whole rows of the buyers of recent pages
        self._positions: pl.DataFrame | None = None  # ROW_NUMBER and BUYER of the matching rows
        self._changed: set[str] = set()  # customerIds whose rows changed since the keys were made
        self._too_many_changes = False

    def rows_changed(self, customer_ids: Iterable[str], *, touched: bool) -> None:
        """Rows of these buyers were added, replaced or removed (in this query's events if ``touched``)."""
        self._positions = None  # positions in the frame move with any change
        if not touched or self._too_many_changes:
            return
        self._changed.update(customer_ids)
        if len(self._changed) > self._repair_limit:
            self._too_many_changes = True
            self._changed.clear()

    def page(
        self,
        model: ReadModel,
        scope: EventScope,
        filters: TransactionFilter,
        request: PageRequest,
        *,
        everyone_keys: EveryoneKeys,
        query_fingerprint: str,
    ) -> tuple[pl.DataFrame, Page]:
        """The whole rows (``BUYER`` and ``CUSTOMER_COLUMNS``) of the requested page, and the page."""
        column = sort_column(SORT_KEYS, request)
        reading = _Reading(model, scope, filters)
        self._bring_up_to_date(reading, everyone_keys)
        keys = everyone_keys.keys(model, column) if self.everyone else self._keys_of(reading, column)
        order = (column, request.descending)
        page = paginate(
            keys,
            request,
            sortable=SORT_KEYS,
            key=BUYER,
            query_fingerprint=query_fingerprint,
            run=self._runs.get(order),
        )
        if page.run is not None:
            # A few orders: dashboards switch between sorts, and each run is at most a few
            # thousand rows of a sort column and a key.
            self._runs.pop(order, None)
            self._runs[order] = page.run
            while len(self._runs) > RUNS_KEPT:
                del self._runs[next(iter(self._runs))]
        return self._whole_rows(page, reading), page

    def _keys_of(self, reading: _Reading, column: str) -> pl.DataFrame:
        """The sort keys of ``column`` for this query's buyers, computed once per column asked."""
        if self._keys is None or self._column != column:
            matching = reading.model.rows(
                reading.scope, reading.filters, columns=[ROW_NUMBER, *key_columns(column)]
            )
            self._keys = sort_keys(matching, column)
            self._column = column
            self._positions = matching.select(ROW_NUMBER, BUYER)
            # Runs of other columns could not be repaired after a change without their keys.
            self._runs = {order: run for order, run in self._runs.items() if run.column == column}
        return self._keys

    def _bring_up_to_date(self, reading: _Reading, everyone_keys: EveryoneKeys) -> None:
        """Repair what the query keeps for the buyers changed since it was last asked."""
        if self._too_many_changes:
            self._too_many_changes = False
            self._keys, self._runs, self._built = None, {}, None
            return
        if not self._changed:
            return
        changed = pl.Series(sorted(self._changed), dtype=pl.String()).str.to_integer(
            base=16, dtype=pl.UInt128
        )
        self._changed.clear()
        if self._built is not None:
            self._built = self._built.filter(~pl.col(BUYER).is_in(changed.implode()))
        if self.everyone:
            self._runs = {
                order: repaired(run, everyone_keys.keys(reading.model, run.column), changed, key=BUYER)
                for order, run in self._runs.items()
            }
            return
        if self._keys is None or self._column is None:
            self._runs = {}
            return
        column = self._column
        fresh = sort_keys(reading.rows_of(changed, key_columns(column)), column)
        unchanged = self._keys.filter(~pl.col(BUYER).is_in(changed.implode()))
        keys = pl.concat([unchanged, fresh], rechunk=False)
        self._keys = keys.rechunk() if keys.n_chunks() > _KEYS_PIECES else keys
        self._runs = {order: repaired(run, fresh, changed, key=BUYER) for order, run in self._runs.items()}

    def _whole_rows(self, page: Page, reading: _Reading) -> pl.DataFrame:
        """The whole rows of the page's buyers, built with those of the next pages of its run.

        The next pages of the run are then joins with what was built; a deep page builds only its
        window, and a repaired query builds again only the buyers that changed. The rows of the
        windows of other orders are kept too (up to ``BUILT_KEPT`` buyers): dashboards switch sorts.
        """
        buyers = page.rows[BUYER]
        held = self._built
        if held is None or not buyers.is_in(held[BUYER].implode()).all():
            window = buyers
            if page.run is not None and not buyers.is_empty():
                run_buyers = page.run.rows[BUYER]
                # Found by comparing Series: a 128-bit key is no literal Polars takes.
                at_start = (run_buyers == buyers.head(1)).arg_true()
                start = at_start[0] if at_start.len() else 0
                window = run_buyers.slice(start, max(COMPLETED_PAGES * buyers.len(), 1))
            held = self._kept_with(window, reading)
            self._built = held
        return buyers.to_frame().join(held, on=BUYER, how="left", maintain_order="left")

    def _kept_with(self, window: pl.Series, reading: _Reading) -> pl.DataFrame:
        """The rows held with those of ``window`` built; the least recently used go beyond ``built_kept``."""
        held = self._built
        if held is None:
            return self._build(window, reading)
        in_window = pl.col(BUYER).is_in(window.implode())
        built = self._build(window.filter(~window.is_in(held[BUYER].implode())), reading)
        others = held.filter(~in_window)
        recent = pl.concat([held.filter(in_window), built])
        return pl.concat([others.tail(max(self._built_kept - recent.height, 0)), recent])

    def _build(self, buyers: pl.Series, reading: _Reading) -> pl.DataFrame:
        return customers(self._rows_of_buyers(buyers, reading)).select(BUYER, *CUSTOMER_COLUMNS)

    def _rows_of_buyers(self, buyers: pl.Series, reading: _Reading) -> pl.DataFrame:
        """These buyers' matching rows (``ROW_COLUMNS``): by position while no row has changed."""
        if self._positions is None:
            return reading.rows_of(buyers, ROW_COLUMNS)
        wanted = self._positions.filter(pl.col(BUYER).is_in(buyers.implode()))[ROW_NUMBER]
        return reading.model.frame().select(ROW_COLUMNS)[wanted]


class _Reading:
    """One question's model, scope and filters."""

    def __init__(self, model: ReadModel, scope: EventScope, filters: TransactionFilter) -> None:
        self.model = model
        self.scope = scope
        self.filters = filters

    def rows_of(self, buyers: pl.Series, columns: Sequence[str]) -> pl.DataFrame:
        """These buyers' rows that the caller may see and that match the filters (only ``columns``).

        Their rows are found by key first (one integer test per row, no other column read) and the
        scope and filters then test those few rows: a search reads only their text.
        """
        frame = self.model.frame()
        predicate = self.scope.expression() & self.filters.expression()
        positions = frame.select(pl.col(BUYER).is_in(buyers.implode()).arg_true()).to_series()
        read = list(dict.fromkeys([*columns, *predicate.meta.root_names()]))
        return frame.select(read)[positions].filter(predicate).select(columns)
