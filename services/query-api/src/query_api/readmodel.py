"""The transactions held in memory as one Polars frame, kept current by upserts and deletes.

Every query reads rows through :meth:`ReadModel.rows`, which applies the caller's event scope
beneath the filters, so no code path can see events outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from query_api.columns import CUSTOMER_ID, SERVED_FIELDS
from query_api.documents import RejectedDocument, to_rows

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from query_api.filters import TransactionFilter
    from query_api.scope import EventScope


@dataclass(slots=True)
class UpsertReport:
    """What one batch of documents did to the read model."""

    applied: int = 0
    stale: int = 0
    rejected: list[RejectedDocument] = field(default_factory=list)


class ReadModel:
    """Transaction rows by id; a change older than the row held (by ``_ts``, then ``_etag``) is ignored."""

    def __init__(self) -> None:
        self._frame: pl.DataFrame | None = None
        # Deleted ids and the _ts of the deletion, so a late copy of a deleted document stays deleted.
        self._deleted: dict[str, int] = {}

    def __len__(self) -> int:
        return 0 if self._frame is None else self._frame.height

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
        self._forget_deletions(fresh["id"].to_list())
        if self._frame is None:
            self._frame = fresh
        else:
            kept = self._frame.filter(~pl.col("id").is_in(fresh["id"].implode()))
            self._frame = pl.concat([kept, fresh], how="vertical", rechunk=False)
        return UpsertReport(applied=fresh.height, stale=incoming.height - fresh.height, rejected=rejected)

    def delete(self, document_id: str, *, ts: int | None = None) -> bool:
        """Remove a document; with the deletion's ``ts``, a newer copy held is kept. True if removed."""
        current = self._current_versions(pl.DataFrame({"id": [document_id]}))
        held_ts = current["_held_ts"].item() if current.height else None
        if ts is not None and held_ts is not None and held_ts > ts:
            return False
        self._deleted[document_id] = ts if ts is not None else max(held_ts or 0, 0)
        if held_ts is None or self._frame is None:
            return False
        self._frame = self._frame.filter(pl.col("id") != document_id)
        return True

    def rows(self, scope: EventScope, filters: TransactionFilter | None = None) -> pl.DataFrame:
        """The rows the caller may see that match the filters."""
        if self._frame is None:
            return to_rows([])[0]
        predicate = scope.expression()
        if filters is not None:
            predicate = predicate & filters.expression()
        return self._frame.filter(predicate)

    def get(self, scope: EventScope, document_id: str) -> dict[str, Any] | None:
        """One transaction as served, or None when it does not exist or is outside the scope."""
        found = self.rows(scope).filter(pl.col("id") == document_id)
        return served(found)[0] if found.height else None

    def _current_versions(self, incoming: pl.DataFrame) -> pl.DataFrame:
        frame = self._frame if self._frame is not None else to_rows([])[0]
        held = frame.select("id", pl.col("_ts").alias("_held_ts"), pl.col("_etag").alias("_held_etag"))
        return incoming.select("id").join(held, on="id", how="inner")

    def _is_fresh(self, incoming: pl.DataFrame) -> pl.Series:
        held = incoming.select("id", "_ts", "_etag").join(
            self._current_versions(incoming), on="id", how="left", maintain_order="left"
        )
        same_version = (pl.col("_ts") == pl.col("_held_ts")) & (pl.col("_etag") == pl.col("_held_etag"))
        newer = pl.col("_held_ts").is_null() | (pl.col("_ts") > pl.col("_held_ts"))
        equal_but_changed = (pl.col("_ts") == pl.col("_held_ts")) & ~same_version.fill_null(value=False)
        fresh = held.select((newer | equal_but_changed).alias("fresh"))["fresh"]
        if self._deleted:
            deleted_at = [self._deleted.get(document_id) for document_id in incoming["id"].to_list()]
            after_deletion = [
                at is None or ts > at for at, ts in zip(deleted_at, incoming["_ts"], strict=True)
            ]
            fresh = fresh & pl.Series(after_deletion, dtype=pl.Boolean())
        return fresh

    def _forget_deletions(self, ids: Iterable[str]) -> None:
        if self._deleted:
            for document_id in ids:
                self._deleted.pop(document_id, None)


def served(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as the API serves them: the document's fields and the buyer's opaque id."""
    return rows.select(*SERVED_FIELDS, CUSTOMER_ID).to_dicts()
