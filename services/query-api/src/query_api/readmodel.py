"""The transactions held in memory as one Polars frame, kept current by upserts and deletes.

Every query reads rows through :meth:`ReadModel.rows`, which applies the caller's event scope
beneath the filters, so no code path can see events outside it.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from query_api.columns import CUSTOMER_ID, PACKED, PACKED_FIELDS, SEARCH_KEY, SERVED_FIELDS
from query_api.documents import RejectedDocument, to_rows
from query_api.heldids import ABSENT, HeldIds, IdKeys
from query_api.packed import unpacked
from query_api.rollups import EventRollups
from query_api.searchindex import COMMON_SHARE, SEGMENT_KEYS, SearchIndex

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from query_api.filters import TransactionFilter
    from query_api.scope import EventScope


CHUNK_ROWS: Final = 131_072
"""Rows per sealed chunk: a change copies at most the chunks holding its rows, this size each."""

_RECENT_PIECES: Final = 16
"""The recent frame is made contiguous when it is made of more pieces than this (pages appended)."""

EVENT_ID: Final = "eventId"


@dataclass(slots=True)
class UpsertReport:
    """What one batch of documents did to the read model."""

    applied: int = 0
    stale: int = 0
    rejected: list[RejectedDocument] = field(default_factory=list)


class ReadModel:
    """Transaction rows by id; a change older than the row held (by ``_ts``, then ``_etag``) is ignored.

    Rows live in sealed chunks of ``chunk_rows`` rows (fewer after removals) and a recent frame
    that new and changed rows are appended to; the recent frame is sealed at a chunk's size. A change to
    a held row copies only the chunks that hold it, never the whole model, so memory peaks at the
    model plus one chunk. Queries read the chunks as one frame without copying them.

    Rows are numbered as they arrive (``SEARCH_KEY``) for the search index; ``search_segment_keys``
    and ``common_gram_share`` are its ``segment_keys`` and ``common_share``.
    """

    def __init__(
        self,
        *,
        chunk_rows: int = CHUNK_ROWS,
        search_segment_keys: int = SEGMENT_KEYS,
        common_gram_share: float = COMMON_SHARE,
    ) -> None:
        self._chunk_rows = chunk_rows
        self._chunks: list[pl.DataFrame] = []
        self._recent: pl.DataFrame = empty_rows()
        self._frame: pl.DataFrame | None = None  # the chunks as one frame, until the next change
        # The _ts of the copy held per id: freshness is decided without reading the frame.
        self._held = HeldIds()
        # Deleted ids and the _ts of the deletion, so a late copy of a deleted document stays deleted.
        self._deleted: dict[str, int] = {}
        self._listeners: list[Callable[[pl.DataFrame], None]] = []
        self._rollups: EventRollups | None = None
        self._next_key = 0
        self._search = SearchIndex(
            self._texts_between, segment_keys=search_segment_keys, common_share=common_gram_share
        )

    def __len__(self) -> int:
        return len(self._held)

    @property
    def search_index(self) -> SearchIndex:
        """The trigram index a search (``q``) reads first."""
        return self._search

    def rollups(self) -> EventRollups:
        """The per-event partial aggregates of these rows, kept current as rows change."""
        if self._rollups is None:
            self._rollups = EventRollups(self)
        return self._rollups

    def on_change(self, listener: Callable[[pl.DataFrame], None]) -> None:
        """Call ``listener`` with the ``eventId`` and ``customerId`` of rows added, replaced or removed."""
        self._listeners.append(listener)

    def upsert(self, documents: Sequence[Mapping[str, Any]]) -> UpsertReport:
        """Insert or replace documents by id, ignoring stale copies; refuse those that cannot be counted."""
        if not documents:
            return UpsertReport()
        incoming, rejected = to_rows(documents)
        # Within a batch the last copy with the highest _ts wins, as it would arriving one by one.
        incoming = (
            incoming.with_row_index("_arrival")
            .sort(["_ts", "_arrival"])
            .unique(subset="id", keep="last", maintain_order=True)
            .drop("_arrival")
        )
        keys = IdKeys.of(incoming["id"])
        held_ts = self._held.ts_of(keys)
        fresh_mask = self._is_fresh(incoming, held_ts)
        fresh = incoming.filter(fresh_mask)
        replaced = fresh.filter(held_ts.filter(fresh_mask) != ABSENT)["id"].to_list()
        touched = self._remove(replaced)
        self._held.put(keys.filter(fresh_mask), fresh["_ts"])
        if self._deleted:
            for document_id in fresh["id"].to_list():
                self._deleted.pop(document_id, None)
        self._append(
            fresh.with_columns(
                pl.int_range(self._next_key, self._next_key + fresh.height, dtype=pl.UInt32).alias(SEARCH_KEY)
            )
        )
        self._next_key += fresh.height
        self._search.added(self._next_key)
        self._changed(pl.concat([touched, fresh.select(EVENT_ID, CUSTOMER_ID)]))
        return UpsertReport(applied=fresh.height, stale=incoming.height - fresh.height, rejected=rejected)

    def delete(self, document_id: str, *, ts: int | None = None) -> bool:
        """Remove a document; with the deletion's ``ts``, a newer copy held is kept. True if removed."""
        keys = IdKeys.of([document_id])
        held = self._held.ts_of(keys)[0]
        held_ts = None if held == ABSENT else held
        if ts is not None and held_ts is not None and held_ts > ts:
            return False
        self._deleted[document_id] = ts if ts is not None else max(held_ts or 0, 0)
        if held_ts is None:
            return False
        self._held.discard(keys)
        self._changed(self._remove([document_id]))
        return True

    def frame(self) -> pl.DataFrame:
        """Every row held, unscoped: for code that applies an ``EventScope`` itself (rollups)."""
        if self._frame is None:
            self._frame = pl.concat([*self._chunks, self._recent], rechunk=False)
        return self._frame

    def rows(
        self, scope: EventScope, filters: TransactionFilter | None = None, *, columns: Sequence[str] = ()
    ) -> pl.DataFrame:
        """The rows the caller may see that match the filters (only ``columns`` when given).

        ``columns`` may name ``ROW_NUMBER``: the row's position in ``frame()`` until the next change.
        """
        predicate = scope.expression()
        if filters is not None:
            predicate = predicate & filters.expression()
        frame = self.frame()
        if ROW_NUMBER in columns:
            frame = frame.with_row_index(ROW_NUMBER)
        narrowing = self._search.narrowing(filters.search) if filters is not None and filters.search else None
        if narrowing is not None:
            # The candidates first, with only the columns read: the exact substring test then reads those.
            if columns:
                frame = frame.select(
                    list(dict.fromkeys([*columns, *predicate.meta.root_names(), SEARCH_KEY]))
                )
            frame = frame.filter(narrowing)
        selected = frame.lazy().filter(predicate)
        if columns:
            selected = selected.select(columns)
        return selected.collect()

    def get(self, scope: EventScope, document_id: str) -> dict[str, Any] | None:
        """One transaction as served, or None when it does not exist or is outside the scope."""
        if not self._held.contains(IdKeys.of([document_id]))[0]:
            return None
        found = self.frame().filter(pl.col("id") == document_id).filter(scope.expression())
        return served(found)[0] if found.height else None

    def _is_fresh(self, incoming: pl.DataFrame, held_ts: pl.Series) -> pl.Series:
        stamps = incoming["_ts"]
        same_ts = ((held_ts != ABSENT) & (stamps == held_ts)).arg_true().to_list()
        deleted = self._deleted
        if not same_ts and not deleted:
            return stamps > held_ts  # ABSENT is below every _ts
        fresh = (stamps > held_ts).to_list()
        ids, etags = incoming["id"].to_list(), incoming["_etag"].to_list()
        if same_ts:
            # _ts has one-second resolution: the same _ts with another _etag is a newer write.
            held_etags = self._held_etags([ids[i] for i in same_ts])
            for index in same_ts:
                fresh[index] = etags[index] != held_etags.get(ids[index])
        for index, (document_id, ts) in enumerate(zip(ids, stamps.to_list(), strict=True)):
            deleted_at = deleted.get(document_id)
            if deleted_at is not None and ts <= deleted_at:
                fresh[index] = False
        return pl.Series(fresh, dtype=pl.Boolean())

    def _held_etags(self, ids: list[str]) -> dict[str, int]:
        held = self.frame().filter(pl.col("id").is_in(ids)).select("id", "_etag")
        return dict(zip(held["id"].to_list(), held["_etag"].to_list(), strict=True))

    def _remove(self, ids: list[str]) -> pl.DataFrame:
        """Drop the rows of these ids, copying only the chunks that hold them; their events and buyers."""
        dropped = [empty_rows().select(EVENT_ID, CUSTOMER_ID)]
        if not ids:
            return dropped[0]
        gone = pl.col("id").is_in(ids)
        chunks = [*self._chunks, self._recent]
        starts = list(accumulate(chunk.height for chunk in chunks))
        hits = self.frame().select(gone.arg_true())["id"].to_list()
        keys = []
        for index in sorted({bisect_right(starts, hit) for hit in hits}):
            removed = chunks[index].filter(gone)
            dropped.append(removed.select(EVENT_ID, CUSTOMER_ID))
            keys.append(removed[SEARCH_KEY])
            chunks[index] = chunks[index].filter(~gone)
        self._recent = chunks.pop()
        # A chunk emptied down to a quarter of its size joins the recent rows again: chunks stay few.
        self._chunks = [chunk for chunk in chunks if chunk.height >= self._chunk_rows // 4]
        self._frame = None
        for chunk in chunks:
            if chunk.height < self._chunk_rows // 4:
                self._append(chunk)
        if keys:
            self._search.removed(pl.concat(keys))
        return pl.concat(dropped)

    def _texts_between(self, low: int, high: int) -> pl.DataFrame:
        """The live rows numbered in ``[low, high)``: their number and search text (the index's input)."""
        return (
            self.frame()
            .filter(pl.col(SEARCH_KEY).is_between(low, high, closed="left"))
            .select(SEARCH_KEY, "searchText")
        )

    def _append(self, fresh: pl.DataFrame) -> None:
        if fresh.height == 0:
            return
        self._recent = pl.concat([self._recent, fresh], how="vertical", rechunk=False)
        if self._recent.n_chunks() > _RECENT_PIECES:
            self._recent = self._recent.rechunk()
        while self._recent.height >= self._chunk_rows:
            self._chunks.append(self._recent.head(self._chunk_rows).rechunk())
            self._recent = self._recent.slice(self._chunk_rows).rechunk()
        self._frame = None

    def _changed(self, event_ids: pl.DataFrame) -> None:
        if event_ids.height:
            for listener in self._listeners:
                listener(event_ids)


ROW_NUMBER: Final = "_row"
"""A row's position in ``ReadModel.frame()``, valid until the next upsert or delete."""


@cache
def empty_rows() -> pl.DataFrame:
    """A frame of no rows with every column of the read model."""
    return to_rows([])[0].with_columns(pl.lit(None, dtype=pl.UInt32).alias(SEARCH_KEY))


def served(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as the API serves them: the document's fields and the buyer's opaque id."""
    return unpacked(rows.select(*SERVED_COLUMNS, CUSTOMER_ID)).select(*SERVED_FIELDS, CUSTOMER_ID).to_dicts()


SERVED_COLUMNS: Final = (*(name for name in SERVED_FIELDS if name not in PACKED_FIELDS), PACKED)
"""The frame's columns a served row is made from."""
