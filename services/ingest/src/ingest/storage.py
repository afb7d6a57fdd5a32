"""Writing transactions: skip unchanged rows, keep enrichment, batch per partition, recover per item.

Each page is grouped by partition (``eventId``) into transactional batches of up to 100 writes,
after one query per batch that reads the stored copies. A row whose source content hash is
unchanged is not written; a changed row is merged into the stored document so fields the
enricher owns survive. Any batch failure (a concurrent writer, a lost race) falls back to
item-by-item writes that re-read and re-decide, so the result is the same either way. Before a
page is written, its orders are added to the enricher's ``transactions-of:`` documents of
payments that have one (``otcommon.payment_transactions.add_to_listed_payments``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.mapping import SOURCE_FIELDS_ENRICHER_OWNS, source_document
from otcommon.enrichment import INITIAL_STATE, STATE_FIELD, EnrichmentState, can_transition
from otcommon.payment_transactions import add_to_listed_payments, ref_of
from otcommon.store import (
    CONTENT_HASH_FIELD,
    MAX_BATCH_OPERATIONS,
    BatchWrite,
    BatchWriteError,
    DocumentNotFoundError,
    EtagMismatchError,
    Patch,
    content_hash,
    read_modify_write,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from otcommon.payment_transactions import TransactionRef
    from otcommon.schemas import TicketTransaction
    from otcommon.store import Document, DocumentContainer, PatchOperation

# Short names for the two states ingest writes (defined in otcommon.enrichment).
PENDING = EnrichmentState.PENDING
QUEUED = EnrichmentState.QUEUED
_SET_QUEUED: list[PatchOperation] = [{"op": "set", "path": f"/{STATE_FIELD}", "value": QUEUED}]


@dataclass
class StoredChanges:
    """What writing a set of transactions did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pending: list[Document] = field(default_factory=list)
    """Stored documents still waiting to be queued for enrichment (new payments, and leftovers)."""

    def add(self, other: StoredChanges) -> None:
        """Fold another result into this one."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.pending.extend(other.pending)


HASH_EXCLUDED = frozenset({"source", "sourceUpdatedAt"})
"""Where and when a row was read says nothing about its content: the same order from another
file, or re-stamped without a change, is not written again."""


def source_hash(document: Document) -> str:
    """The content hash of a row's source-owned fields."""
    return content_hash({key: value for key, value in document.items() if key not in HASH_EXCLUDED})


def new_document(new: Document) -> Document:
    """The first stored copy of a row: its content hash, and a payment's initial enrichment state."""
    state = INITIAL_STATE if new.get("PaymentID") else None
    return {**new, CONTENT_HASH_FIELD: source_hash(new), STATE_FIELD: state}


def plan_write(new: Document, existing: Document | None) -> BatchWrite | None:
    """The write that brings the stored copy up to ``new`` (source-owned fields), or None if unchanged."""
    if existing is None:
        return BatchWrite("create", new_document(new))
    digest = source_hash(new)
    if existing.get(CONTENT_HASH_FIELD) == digest:
        return None
    merged = {key: value for key, value in existing.items() if not key.startswith("_")}
    merged.update(new)
    merged[CONTENT_HASH_FIELD] = digest
    if existing.get("PaymentID") != new.get("PaymentID"):
        # Another payment now backs the order: what was enriched describes the old one.
        for owned in SOURCE_FIELDS_ENRICHER_OWNS:
            merged.pop(owned, None)
        merged[STATE_FIELD] = PENDING if new.get("PaymentID") else None
    return BatchWrite("replace", merged, etag=existing["_etag"])


def _chunks(items: Sequence[Document], size: int) -> Iterable[Sequence[Document]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TransactionWriter:
    """Stores transactions in the ``transactions`` container (partitioned by ``/eventId``)."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        concurrency: int = 16,
        payment_index: DocumentContainer | None = None,
    ) -> None:
        self._container = container
        self._limit = asyncio.Semaphore(concurrency)
        self._payment_index = payment_index

    async def write(self, transactions: Sequence[TicketTransaction]) -> StoredChanges:
        """Store a page of transactions; returns counts and the documents to queue."""
        by_partition: dict[str, dict[str, Document]] = defaultdict(dict)
        for transaction in transactions:
            # The same order twice in one page: the later copy is the newer one.
            by_partition[transaction.event_id][transaction.id] = source_document(transaction)
        if self._payment_index is not None:
            await self._list_under_payments(by_partition)
        jobs = [
            self._write_chunk(event_id, chunk)
            for event_id, documents in by_partition.items()
            for chunk in _chunks(list(documents.values()), MAX_BATCH_OPERATIONS)
        ]
        total = StoredChanges()
        for result in await asyncio.gather(*jobs):
            total.add(result)
        return total

    async def _list_under_payments(self, by_partition: Mapping[str, Mapping[str, Document]]) -> None:
        # Before the orders are stored: a stored order of a payment the enricher has listed is listed
        # too, so the webhook service's point reads find a second order of an enriched payment at
        # once (otcommon.payment_transactions). One query per 500 payments; writes only for those listed.
        refs: dict[str, set[TransactionRef]] = defaultdict(set)
        for documents in by_partition.values():
            for document in documents.values():
                if document.get("PaymentID"):
                    refs[str(document["PaymentID"])].add(ref_of(document))
        if refs and self._payment_index is not None:
            await add_to_listed_payments(self._payment_index, refs)

    async def _write_chunk(self, event_id: str, documents: Sequence[Document]) -> StoredChanges:
        async with self._limit:
            changes = StoredChanges()
            existing = await self._container.read_many([d["id"] for d in documents], partition_key=event_id)
            writes: list[BatchWrite] = []
            sources: list[Document] = []
            for document in documents:
                stored = existing.get(document["id"])
                write = plan_write(document, stored)
                if write is None:
                    changes.unchanged += 1
                    if stored is not None and stored.get(STATE_FIELD) == PENDING:
                        changes.pending.append(stored)  # left pending by an interrupted run
                else:
                    writes.append(write)
                    sources.append(document)
            if not writes:
                return changes
            try:
                results = await self._container.write_batch(writes, partition_key=event_id)
            except BatchWriteError:
                for source in sources:
                    changes.add(await self._write_single(source))
                return changes
            for write, result in zip(writes, results, strict=True):
                if write.kind == "create":
                    changes.created += 1
                else:
                    changes.updated += 1
                if result.get(STATE_FIELD) == PENDING:
                    changes.pending.append(result)
            return changes

    async def _write_single(self, source: Document) -> StoredChanges:
        """Re-read and re-decide until the write lands: the fallback after a failed batch."""

        def planned(stored: Document | None) -> Document | None:
            write = plan_write(source, stored)
            return None if write is None else dict(write.document)

        outcome = await read_modify_write(
            self._container,
            str(source["id"]),
            partition_key=str(source["eventId"]),
            mutate=planned,
            create=lambda: new_document(source),
        )
        changes = StoredChanges(
            created=int(outcome.result == "created"),
            updated=int(outcome.result == "updated"),
            unchanged=int(outcome.result == "unchanged"),
        )
        if outcome.document.get(STATE_FIELD) == PENDING:
            changes.pending.append(outcome.document)  # new, or left pending by an interrupted run
        return changes

    async def mark_queued(self, documents: Sequence[Document]) -> int:
        """Move published payments from pending to queued, never overwriting a newer enrichment state."""
        by_partition: dict[str, list[Document]] = defaultdict(list)
        for document in documents:
            by_partition[str(document["eventId"])].append(document)
        jobs = [
            self._mark_chunk(event_id, chunk)
            for event_id, docs in by_partition.items()
            for chunk in _chunks(docs, MAX_BATCH_OPERATIONS)
        ]
        return sum(await asyncio.gather(*jobs))

    async def _mark_chunk(self, event_id: str, documents: Sequence[Document]) -> int:
        async with self._limit:
            # A patch per document: only the state travels, guarded by the ETag the publish was based on.
            writes = [BatchWrite.patch(str(doc["id"]), _SET_QUEUED, etag=doc["_etag"]) for doc in documents]
            try:
                await self._container.write_batch(writes, partition_key=event_id, return_documents=False)
            except BatchWriteError:
                return sum([await self._mark_single(event_id, str(doc["id"])) for doc in documents])
            return len(writes)

    async def _mark_single(self, event_id: str, document_id: str) -> int:
        def queue(current: Document) -> Patch | None:
            if not can_transition(current.get(STATE_FIELD), QUEUED):
                return None  # the enricher got there first, or the payment is gone
            return Patch(_SET_QUEUED)

        try:
            outcome = await read_modify_write(
                self._container, document_id, partition_key=event_id, mutate=queue
            )
        except (DocumentNotFoundError, EtagMismatchError):
            return 0  # still pending: the next run's repair publishes it again
        return 1 if outcome.result == "updated" else 0
