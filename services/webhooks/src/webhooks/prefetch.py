"""A batch's lookups read at once: the index documents and the transactions of many events' payments.

Applying one event reads the enricher's ``transactions-of:`` documents of its charge and
PaymentIntent, then each listed transaction, before the guarded write: four point reads, each a
Cosmos DB request costing about 2 ms of client CPU. A worker applying a batch of events reads all of
them first with two queries by id (``ARRAY_CONTAINS(@ids, c.id)``, answered from the id index), and
each event then decides on those copies. A copy that changed since it was read only costs the
write's ETag check and one read, as a lost race does, so nothing is decided on stale data; a key or
transaction not read here is read by the event itself, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otcommon.payment_transactions import (
    LISTED_DOCUMENTS_QUERY,
    TransactionRef,
    listed_transactions,
    payment_transactions_key,
    ref_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from otcommon.store import Document, DocumentContainer

TRANSACTIONS_BY_ID_QUERY = "SELECT * FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
"""The transactions with these ids, across event partitions (an id lookup, not a scan)."""

IDS_PER_QUERY = 500
"""Keeps a query's parameters far below Cosmos DB's query size limit."""


@dataclass(slots=True)
class Prefetched:
    """What a batch's queries found: index documents by key (None: none stored), transactions by ref."""

    index_documents: dict[str, Document | None] = field(default_factory=dict)
    transactions: dict[TransactionRef, Document] = field(default_factory=dict)

    def covers(self, key: str) -> bool:
        """Whether the index document of this key was looked for (found or not)."""
        return key in self.index_documents

    def transaction(self, ref: TransactionRef) -> Document | None:
        """The copy read of one transaction, None when it was not read (or not found)."""
        return self.transactions.get(ref)

    def remember(self, ref: TransactionRef, document: Document) -> None:
        """Keep the copy a write returned: the batch's next event about it starts from there."""
        self.transactions[ref] = document

    def forget(self, ref: TransactionRef) -> None:
        """Drop a copy known to be stale: the next event about it reads what is stored."""
        self.transactions.pop(ref, None)


async def prefetch(
    *, index: DocumentContainer, transactions: DocumentContainer, stripe_ids: Iterable[str]
) -> Prefetched:
    """The index documents of these charge and PaymentIntent ids, and every transaction they list."""
    keys = sorted({payment_transactions_key(stripe_id) for stripe_id in stripe_ids})
    found = Prefetched(index_documents=dict.fromkeys(keys))
    for document in await _by_id(index, LISTED_DOCUMENTS_QUERY, "@keys", keys):
        found.index_documents[str(document["id"])] = document
    refs = {
        ref
        for document in found.index_documents.values()
        if document
        for ref in listed_transactions(document)
    }
    ids = sorted({ref.transaction_id for ref in refs})
    for document in await _by_id(transactions, TRANSACTIONS_BY_ID_QUERY, "@ids", ids):
        ref = ref_of(document)
        if ref in refs:  # an id is unique per partition only: another event's order may share it
            found.transactions[ref] = document
    return found


async def _by_id(
    container: DocumentContainer, query: str, parameter: str, ids: Sequence[str]
) -> list[Document]:
    rows: list[Document] = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = list(ids[start : start + IDS_PER_QUERY])
        pages = container.query(query, parameters={parameter: chunk}, page_size=IDS_PER_QUERY)
        rows += [row async for page in pages for row in page.items]
    return rows
