"""The transactions held in memory as one Polars frame, kept current by upserts and deletes.

Every query reads rows through :meth:`ReadModel.rows`, which applies the caller's event scope
beneath the filters, so no code path can see events outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from query_api.columns import CUSTOMER_ID, SERVED_FIELDS
from query_api.documents import RejectedDocument, to_rows
from query_api.rollups import EventRollups

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from query_api.filters import TransactionFilter
    from query_api.scope import EventScope


@dataclass(slots=True)
class UpsertReport:
    """What one batch of documents did to the read model."""

    applied: int = 0
    stale: int = 0
    rejected: list[RejectedDocument] = field(default_factory=list)


class ReadModel:
    """Transaction rows by id; a change older than the row held (by ``_ts``, then ``_etag``) is ignored.

    Rows live in two frames: a large settled one and a small recent one that new and changed rows
    are appended to. The recent frame is merged into the settled one once it holds an eighth as
    many rows, so a page of changes copies the small frame, not the whole model, and the number of
    chunks a query walks stays at two.
    """

    def __init__(self) -> None:
        self._settled: pl.DataFrame = empty_rows()
        self._recent: pl.DataFrame = empty_rows()
        self._frame: pl.DataFrame | None = None  # settled + recent, until the next change
        # The _ts of the copy held per id: freshness is decided without a join against the frame.
        self._held_ts: dict[str, int] = {}
        # Deleted ids and the _ts of the deletion, so a late copy of a deleted document stays deleted.
        self._deleted: dict[str, int] = {}
        self._listeners: list[Callable[[pl.DataFrame], None]] = []
        self._rollups: EventRollups | None = None

    def __len__(self) -> int:
        return len(self._held_ts)

    def rollups(self) -> EventRollups:
        """The per-event partial aggregates of these rows, kept current as rows change."""
        if self._rollups is None:
            self._rollups = EventRollups(self)
        return self._rollups

    def on_change(self, listener: Callable[[pl.DataFrame], None]) -> None:
        """Call ``listener`` with the ``eventId`` column of rows added, replaced or removed."""
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
        fresh = incoming.filter(self._is_fresh(incoming))
        ids = fresh["id"].to_list()
        replaced = [document_id for document_id in ids if document_id in self._held_ts]
        touched = self._remove(replaced)
        for document_id, ts in zip(ids, fresh["_ts"].to_list(), strict=True):
            self._held_ts[document_id] = ts
            self._deleted.pop(document_id, None)
        self._append(fresh)
        self._changed(pl.concat([touched, fresh.select("eventId")]))
        return UpsertReport(applied=fresh.height, stale=incoming.height - fresh.height, rejected=rejected)

    def delete(self, document_id: str, *, ts: int | None = None) -> bool:
        """Remove a document; with the deletion's ``ts``, a newer copy held is kept. True if removed."""
        held_ts = self._held_ts.get(document_id)
        if ts is not None and held_ts is not None and held_ts > ts:
            return False
        self._deleted[document_id] = ts if ts is not None else max(held_ts or 0, 0)
        if held_ts is None:
            return False
        del self._held_ts[document_id]
        self._changed(self._remove([document_id]))
        return True

    def frame(self) -> pl.DataFrame:
        """Every row held, unscoped: for code that applies an ``EventScope`` itself (rollups)."""
        if self._frame is None:
            self._frame = pl.concat([self._settled, self._recent], rechunk=False)
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
        selected = self.frame().lazy()
        if ROW_NUMBER in columns:
            selected = selected.with_row_index(ROW_NUMBER)
        selected = selected.filter(predicate)
        if columns:
            selected = selected.select(columns)
        return selected.collect()

    def get(self, scope: EventScope, document_id: str) -> dict[str, Any] | None:
        """One transaction as served, or None when it does not exist or is outside the scope."""
        if document_id not in self._held_ts:
            return None
        found = self.frame().filter(pl.col("id") == document_id).filter(scope.expression())
        return served(found)[0] if found.height else None

    def _is_fresh(self, incoming: pl.DataFrame) -> pl.Series:
        ids, stamps = incoming["id"].to_list(), incoming["_ts"].to_list()
        held = [self._held_ts.get(document_id) for document_id in ids]
        same_ts = [
            i for i, (ts, at) in enumerate(zip(stamps, held, strict=True)) if at is not None and ts == at
        ]
        held_etags = self._held_etags([ids[i] for i in same_ts]) if same_ts else {}
        etags = incoming["_etag"].to_list()
        fresh = []
        for index, (document_id, ts, at) in enumerate(zip(ids, stamps, held, strict=True)):
            # _ts has one-second resolution: the same _ts with another _etag is a newer write.
            newer = at is None or ts > at or (ts == at and etags[index] != held_etags.get(document_id))
            deleted_at = self._deleted.get(document_id)
            fresh.append(newer and (deleted_at is None or ts > deleted_at))
        return pl.Series(fresh, dtype=pl.Boolean())

    def _held_etags(self, ids: list[str]) -> dict[str, str | None]:
        held = self.frame().filter(pl.col("id").is_in(ids)).select("id", "_etag")
        return dict(zip(held["id"].to_list(), held["_etag"].to_list(), strict=True))

    def _remove(self, ids: list[str]) -> pl.DataFrame:
        """Drop the rows of these ids; the ``eventId`` of each dropped row."""
        if not ids:
            return pl.DataFrame(schema={"eventId": pl.String()})
        gone = pl.col("id").is_in(ids)
        dropped = [self._recent.filter(gone).select("eventId")]
        self._recent = self._recent.filter(~gone)
        in_settled = self._settled.lazy().filter(gone).select("eventId").collect()
        if in_settled.height:
            # The one full copy: a change to a row that was already settled.
            self._settled = self._settled.filter(~gone)
            dropped.append(in_settled)
        self._frame = None
        return pl.concat(dropped)

    def _append(self, fresh: pl.DataFrame) -> None:
        if fresh.height == 0:
            return
        self._recent = pl.concat([self._recent, fresh], how="vertical").rechunk()
        if self._recent.height * _SETTLE_RATIO >= self._settled.height:
            self._settled = pl.concat([self._settled, self._recent], how="vertical").rechunk()
            self._recent = self._recent.clear()
        self._frame = None

    def _changed(self, event_ids: pl.DataFrame) -> None:
        if event_ids.height:
            for listener in self._listeners:
                listener(event_ids)


ROW_NUMBER: Final = "_row"
"""A row's position in ``ReadModel.frame()``, valid until the next upsert or delete."""

_SETTLE_RATIO: Final = 8
"""The recent frame joins the settled one when it reaches 1/8 of its rows (amortized copies)."""


def empty_rows() -> pl.DataFrame:
    """A frame of no rows with every column of the read model."""
    return to_rows([])[0]


def served(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as the API serves them: the document's fields and the buyer's opaque id."""
    return rows.select(*SERVED_FIELDS, CUSTOMER_ID).to_dicts()
