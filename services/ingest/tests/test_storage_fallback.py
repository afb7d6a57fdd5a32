"""The item-by-item fallback after a failed batch: it re-reads, re-decides and keeps the enricher's work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingest_fakes import api_row, container

from ingest.mapping import map_api_row
from ingest.storage import TransactionWriter
from otcommon.enrichment import EnrichmentState
from otcommon.store import BatchWriteError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from otcommon.store import BatchWrite, Document, InMemoryContainer


class RivalBeforeBatch:
    """The transactions container, where a rival writer gets in just before the next batch."""

    def __init__(self, inner: InMemoryContainer) -> None:
        self._inner = inner
        self.rival: Callable[[], Awaitable[None]] | None = None
        self.failed_batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[Document]:
        rival, self.rival = self.rival, None
        if rival is not None:
            await rival()
        try:
            return await self._inner.write_batch(
                writes, partition_key=partition_key, return_documents=return_documents
            )
        except BatchWriteError:
            self.failed_batches += 1
            raise


async def _enrich(store: InMemoryContainer, transaction_id: str) -> None:
    await store.patch(
        transaction_id,
        partition_key="ev1",
        operations=[
            {"op": "set", "path": "/enrichmentState", "value": EnrichmentState.ENRICHED},
            {"op": "set", "path": "/stripeRouteType", "value": "connected"},
        ],
    )


async def test_a_source_change_that_loses_its_batch_is_merged_onto_the_rivals_copy():
    store = container("transactions")
    rivalled = RivalBeforeBatch(store)
    writer = TransactionWriter(rivalled)  # type: ignore[arg-type]
    await writer.write([map_api_row(api_row(1)), map_api_row(api_row(2))])

    async def enricher() -> None:
        await _enrich(store, "tx-1")

    rivalled.rival = enricher
    changes = await writer.write(
        [map_api_row(api_row(1, TotalScanCount=3)), map_api_row(api_row(2, TotalScanCount=4))]
    )
    assert rivalled.failed_batches == 1
    assert (changes.created, changes.updated, changes.unchanged) == (0, 2, 0)
    first = await store.read("tx-1", partition_key="ev1")
    second = await store.read("tx-2", partition_key="ev1")
    assert (first["TotalScanCount"], first["enrichmentState"], first["stripeRouteType"]) == (
        3,
        "enriched",
        "connected",
    )
    assert second["TotalScanCount"] == 4


async def test_marking_queued_after_a_lost_batch_never_overwrites_a_newer_state():
    store = container("transactions")
    rivalled = RivalBeforeBatch(store)
    writer = TransactionWriter(rivalled)  # type: ignore[arg-type]
    changes = await writer.write([map_api_row(api_row(1)), map_api_row(api_row(2))])
    assert {doc["enrichmentState"] for doc in changes.pending} == {"pending"}

    async def enricher() -> None:
        await _enrich(store, "tx-1")

    rivalled.rival = enricher
    marked = await writer.mark_queued(changes.pending)
    assert (rivalled.failed_batches, marked) == (1, 1)
    states = {doc["id"]: doc["enrichmentState"] async for doc in store.find({})}
    assert states == {"tx-1": "enriched", "tx-2": "queued"}
