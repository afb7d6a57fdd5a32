"""Which transactions a Stripe payment id names: a point-read index the enricher keeps, others read.

The ``transactions`` container is partitioned by ``/eventId``, and a Stripe event names a charge
and/or a PaymentIntent, never an order. Finding the orders of a payment is then a query across
every partition. The enricher already finds them (it writes every transaction of the payment it
enriches), so it records what it found in its ``stripe-facts`` container, one document per Stripe
id: ``transactions-of:<ch_|pi_>`` names the transactions (id and event id) carrying that payment,
under its ``PaymentID`` and both its charge and PaymentIntent ids. Its partition follows from its
key (``otcommon.stripe_facts``): a point read derives it, and the enricher creates the documents
of the payments it enriches together in a few transactional batches (a cold start creates two
per payment: one request each was most of its Cosmos DB requests).

The enricher creates the documents (SPEC section 2). Ingest adds to them, never creates one: an
order stored under a PaymentID that already has a document is listed there before it is stored
(``add_to_listed_payments``, one query per 500 payments), so a second order of an enriched
payment is found by the point reads at once, not only after the enricher handles it. Both only
add entries, under the ETag. The documents are a hint, not the truth: an order re-pointed to
another payment stays listed, and an order stored while its payment's first document was being
created may not be listed until the enricher handles it. A reader therefore checks each listed
transaction still names the payment, and uses the query when a payment has no document or a
listed transaction does not check out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otcommon.store import read_modify_write
from otcommon.stripe_facts import PARTITION_FIELD, fact_partition

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from otcommon.store import DocumentContainer

PAYMENT_TRANSACTIONS_CONTAINER = "stripe-facts"
PAYMENT_TRANSACTIONS_KIND = "transactions-of"
TRANSACTIONS_FIELD = "transactions"
LISTED_DOCUMENTS_QUERY = "SELECT * FROM c WHERE ARRAY_CONTAINS(@keys, c.id)"
"""The index documents among these keys (one query across the container's few partitions)."""
_KEYS_PER_QUERY = 500  # keeps a query's parameters far below Cosmos DB's query size limit


@dataclass(frozen=True, slots=True, order=True)
class TransactionRef:
    """Where one transaction is: its partition (``eventId``) and its id: enough for a point read."""

    event_id: str
    transaction_id: str

    def as_entry(self) -> dict[str, str]:
        """The form stored in the index document."""
        return {"eventId": self.event_id, "id": self.transaction_id}


def payment_transactions_key(stripe_id: str) -> str:
    """The index document naming the transactions paid by a ``ch_``/``pi_`` id."""
    return f"{PAYMENT_TRANSACTIONS_KIND}:{stripe_id}"


def payment_transactions_partition(key: str) -> str:
    """The partition of an index document (its ``payment_transactions_key``)."""
    return fact_partition(key)


def payment_transactions_document(stripe_id: str, refs: Iterable[TransactionRef]) -> dict[str, Any]:
    """A new index document listing ``refs`` under a ``ch_``/``pi_`` id."""
    key = payment_transactions_key(stripe_id)
    return {
        "id": key,
        PARTITION_FIELD: payment_transactions_partition(key),
        "kind": PAYMENT_TRANSACTIONS_KIND,
        TRANSACTIONS_FIELD: [ref.as_entry() for ref in sorted(set(refs))],
    }


def ref_of(transaction: Mapping[str, Any]) -> TransactionRef:
    """Where a stored transaction document is."""
    return TransactionRef(event_id=str(transaction["eventId"]), transaction_id=str(transaction["id"]))


def listed_transactions(document: Mapping[str, Any]) -> list[TransactionRef]:
    """The transactions an index document names (malformed entries are skipped: a reader falls back)."""
    entries = document.get(TRANSACTIONS_FIELD)
    if not isinstance(entries, list):
        return []
    return sorted(
        {
            TransactionRef(event_id=entry["eventId"], transaction_id=entry["id"])
            for entry in entries
            if isinstance(entry, dict)
            and isinstance(entry.get("eventId"), str)
            and isinstance(entry.get("id"), str)
        }
    )


def with_transactions(document: Mapping[str, Any], refs: Iterable[TransactionRef]) -> dict[str, Any] | None:
    """The index document with ``refs`` added; None when it lists every one already."""
    listed = set(listed_transactions(document))
    added = set(refs) - listed
    if not added:
        return None
    kept = {name: value for name, value in document.items() if not name.startswith("_")}
    return {**kept, TRANSACTIONS_FIELD: [ref.as_entry() for ref in sorted(listed | added)]}


async def add_to_listed_payments(
    index: DocumentContainer, refs_by_payment_id: Mapping[str, Iterable[TransactionRef]]
) -> int:
    """List transactions under the payments that already have a document; how many documents changed.

    For ingest, before it stores the transactions. One query per 500 payments finds their documents;
    only a document missing some of the transactions is written (under the ETag of the copy the
    query returned). A payment without a document gets none: readers find its transactions by the
    query, and the enricher lists what it finds when it creates the document.
    """
    wanted = {
        payment_transactions_key(payment_id): frozenset(refs)
        for payment_id, refs in refs_by_payment_id.items()
        if payment_id
    }
    keys = sorted(key for key, refs in wanted.items() if refs)
    changed = 0
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        async for page in index.query(LISTED_DOCUMENTS_QUERY, parameters={"@keys": chunk}):
            for document in page.items:
                refs = wanted.get(str(document.get("id")), frozenset())
                if with_transactions(document, refs) is None:
                    continue  # lists them already: nothing written
                outcome = await read_modify_write(
                    index,
                    str(document["id"]),
                    partition_key=payment_transactions_partition(str(document["id"])),
                    mutate=lambda current, refs=refs: with_transactions(current, refs),
                    current=document,
                )
                changed += outcome.result == "updated"
    return changed
