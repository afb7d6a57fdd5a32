"""Which transactions a Stripe payment id names: a point-read index the enricher keeps, others read.

The ``transactions`` container is partitioned by ``/eventId``, and a Stripe event names a charge
and/or a PaymentIntent, never an order. Finding the orders of a payment is then a query across
every partition. The enricher already finds them (it writes every transaction of the payment it
enriches), so it records what it found in its ``stripe-index`` container (partition ``/id``), one
document per Stripe id: ``transactions-of:<ch_|pi_>`` names the transactions (id and event id)
carrying that payment, under its ``PaymentID`` and both its charge and PaymentIntent ids.

The documents are the enricher's (SPEC section 2: one writer per document). They are a hint, not
the truth: entries are only added (an order re-pointed to another payment stays listed), and an
order stored after the enricher's last look at the payment is not listed yet. A reader therefore
checks each listed transaction still names the payment, and uses the query when a payment has no
document or a listed transaction does not check out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

PAYMENT_TRANSACTIONS_CONTAINER = "stripe-index"
PAYMENT_TRANSACTIONS_KIND = "transactions-of"
TRANSACTIONS_FIELD = "transactions"


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


def payment_transactions_document(stripe_id: str, refs: Iterable[TransactionRef]) -> dict[str, Any]:
    """A new index document listing ``refs`` under a ``ch_``/``pi_`` id."""
    return {
        "id": payment_transactions_key(stripe_id),
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
