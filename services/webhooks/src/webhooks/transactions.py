"""The transactions a Stripe object concerns, and the guarded write of the webhook service's fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otcommon.store import Patch, partition_key_value, read_modify_write

if TYPE_CHECKING:
    from collections.abc import Callable

    from otcommon.store import Document, DocumentContainer
    from webhooks.facts import Merge

PAYMENT_QUERY = (
    "SELECT * FROM c WHERE c.PaymentID = @charge OR c.PaymentID = @paymentIntent "
    "OR c.stripeChargeId = @charge OR c.stripePaymentIntentId = @paymentIntent"
)
"""Transactions paid by a charge or PaymentIntent, across event partitions."""

# Never a real Stripe id, and never empty: box-office cash rows have an empty PaymentID.
_NO_ID = "none:"


@dataclass(frozen=True, slots=True)
class Written:
    """One transaction the event changed (or had changed before a crash): announce it."""

    transaction_id: str
    event_id: str
    changed_fields: tuple[str, ...]


class TransactionFacts:
    """Finds transactions by payment and writes Stripe's facts into them, ETag-guarded."""

    def __init__(self, container: DocumentContainer) -> None:
        self._container = container

    async def find(self, *, charge: str | None, payment_intent: str | None) -> list[Document]:
        """Every transaction paid by this charge or PaymentIntent."""
        parameters = {"@charge": charge or _NO_ID, "@paymentIntent": payment_intent or _NO_ID}
        return [
            row
            async for page in self._container.query(PAYMENT_QUERY, parameters=parameters)
            for row in page.items
        ]

    async def write(self, document: Document, merge: Callable[[Document], Merge]) -> Written | None:
        """Merge the event's facts into one transaction; what to announce, or None when nothing is newer.

        ``merge`` is decided again on every attempt against the copy just read, so a concurrent
        writer (ingest, the enricher, another event about the same payment) is never overwritten
        and an older event never lands over a newer one that won the race.
        """
        announce: list[tuple[str, ...]] = []

        def mutate(current: Document) -> Patch | None:
            announce.clear()
            merged = merge(current)
            if merged.already_applied:
                announce.append(())
                return None
            if merged.fields is None:
                return None
            announce.append(tuple(merged.fields))
            return Patch(
                [{"op": "set", "path": f"/{name}", "value": value} for name, value in merged.fields.items()]
            )

        await read_modify_write(
            self._container,
            str(document["id"]),
            partition_key=partition_key_value(document, self._container.partition_key_path),
            mutate=mutate,
        )
        if not announce:
            return None
        return Written(str(document["id"]), _event_of(document), announce[0])


def _event_of(document: Document) -> str:
    value: Any = document.get("eventId")
    return str(value)
