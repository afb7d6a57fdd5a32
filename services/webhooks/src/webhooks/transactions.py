"""The transactions a Stripe object concerns, and the guarded write of the webhook service's fields.

Found by point reads: the enricher's index (``otcommon.payment_transactions``) names the
transactions of each charge and PaymentIntent id. Each listed transaction is checked, inside its
ETag-guarded write, to still name the payment; when a payment has no index document yet, or a listed
transaction does not check out, the cross-partition query finds them instead (counted), so a
stale or missing index costs a query, never a wrong or missed write.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from opentelemetry import metrics

from otcommon.payment_transactions import (
    TransactionRef,
    listed_transactions,
    payment_transactions_key,
    ref_of,
)
from otcommon.store import DocumentNotFoundError, Patch, read_modify_write
from webhooks.prefetch import Prefetched, prefetch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from otcommon.store import Document, DocumentContainer
    from webhooks.facts import Merge

PAYMENT_QUERY = (
    "SELECT * FROM c WHERE c.PaymentID = @charge OR c.PaymentID = @paymentIntent "
    "OR c.stripeChargeId = @charge OR c.stripePaymentIntentId = @paymentIntent"
)
"""Transactions paid by a charge or PaymentIntent, across event partitions (the fallback)."""

# Never a real Stripe id, and never empty: box-office cash rows have an empty PaymentID.
_NO_ID = "none:"

_meter = metrics.get_meter("webhooks")
LOOKUP_FALLBACKS = _meter.create_counter(
    "webhooks.payment_lookup_fallbacks",
    description="Events whose transactions were found by the cross-partition query, not the index.",
)


class Fallback(StrEnum):
    """Why the transactions of a payment were found by the query rather than by point reads."""

    NOT_INDEXED = "not-indexed"
    """No index document for any id the event names (the enricher has not seen the payment yet)."""
    STALE_ENTRY = "stale-entry"
    """A listed transaction is gone or names another payment now: the index may be behind."""


@dataclass(frozen=True, slots=True)
class Payment:
    """The Stripe ids an event names, and the test of whether a transaction is paid by them."""

    charge: str | None
    payment_intent: str | None

    def ids(self) -> list[str]:
        """The ids named, charge first."""
        return [each for each in (self.charge, self.payment_intent) if each]

    def is_named_by(self, transaction: Document) -> bool:
        """Whether the transaction is this payment's, by the query's own rule."""
        return bool(
            transaction.get("PaymentID") in self.ids()
            or (self.charge and transaction.get("stripeChargeId") == self.charge)
            or (self.payment_intent and transaction.get("stripePaymentIntentId") == self.payment_intent)
        )


@dataclass(frozen=True, slots=True)
class Written:
    """One transaction the event changed (or had changed before a crash): announce it."""

    transaction_id: str
    event_id: str
    changed_fields: tuple[str, ...]


@dataclass(slots=True)
class PaymentWrites:
    """What applying an event to a payment did: how many transactions it has, which ones to announce."""

    found: int = 0
    written: list[Written] = field(default_factory=list)

    def add(self, written: Written | None) -> None:
        """One more transaction of the payment, and its change to announce (None: nothing newer)."""
        self.found += 1
        if written is not None:
            self.written.append(written)


class _NotThisPaymentError(Exception):
    """A listed transaction is gone, or names another payment now."""


class TransactionFacts:
    """Finds transactions by payment and writes Stripe's facts into them, ETag-guarded."""

    def __init__(self, container: DocumentContainer, *, index: DocumentContainer | None = None) -> None:
        self._container = container
        self._index = index
        self._prefetched: Prefetched | None = None
        self.fallbacks: Counter[Fallback] = Counter()
        """Lookups that needed the query, by reason (also exported: ``webhooks.payment_lookup_fallbacks``)."""

    async def prefetch(self, payments: Iterable[Payment]) -> TransactionFacts:
        """These facts deciding first on copies read for many payments at once (``webhooks.prefetch``).

        The copy returned shares the containers and the fallback counts; only the batch uses it.
        """
        if self._index is None:
            return self
        stripe_ids = [stripe_id for payment in payments for stripe_id in payment.ids()]
        found = await prefetch(index=self._index, transactions=self._container, stripe_ids=stripe_ids)
        view = copy.copy(self)
        view._prefetched = found  # noqa: SLF001 - the copy is of this class
        return view

    async def write_payment(
        self, *, charge: str | None, payment_intent: str | None, merge: Callable[[Document], Merge]
    ) -> PaymentWrites:
        """Merge the event's facts into every transaction of the payment (none found: ``found == 0``)."""
        payment = Payment(charge, payment_intent)
        writes = PaymentWrites()
        listed = await self._listed(payment)
        done: set[TransactionRef] = set()
        stale = False
        for ref in listed:
            try:
                writes.add(await self._write(ref, payment, merge))
            except _NotThisPaymentError:
                stale = True
            else:
                done.add(ref)
        if listed and not stale:
            return writes
        self._count_fallback(Fallback.STALE_ENTRY if listed else Fallback.NOT_INDEXED)
        for document in await self.find(charge=charge, payment_intent=payment_intent):
            ref = ref_of(document)
            if ref in done:
                continue  # written through the index a moment ago: not again, not announced twice
            with contextlib.suppress(_NotThisPaymentError):  # re-pointed between the query and the write
                writes.add(await self._write(ref, payment, merge))
        return writes

    async def find(self, *, charge: str | None, payment_intent: str | None) -> list[Document]:
        """Every transaction paid by this charge or PaymentIntent (the cross-partition query)."""
        parameters = {"@charge": charge or _NO_ID, "@paymentIntent": payment_intent or _NO_ID}
        return [
            row
            async for page in self._container.query(PAYMENT_QUERY, parameters=parameters)
            for row in page.items
        ]

    async def _listed(self, payment: Payment) -> list[TransactionRef]:
        """The transactions the index lists under any of the payment's ids (empty: not indexed)."""
        if self._index is None:
            return []
        documents = await asyncio.gather(*(self._index_document(stripe_id) for stripe_id in payment.ids()))
        return sorted({ref for document in documents if document for ref in listed_transactions(document)})

    async def _index_document(self, stripe_id: str) -> Document | None:
        if self._index is None:
            return None
        key = payment_transactions_key(stripe_id)
        if self._prefetched is not None and self._prefetched.covers(key):
            return self._prefetched.index_documents[key]
        try:
            return await self._index.read(key, partition_key=key)
        except DocumentNotFoundError:
            return None

    def _count_fallback(self, reason: Fallback) -> None:
        self.fallbacks[reason] += 1
        LOOKUP_FALLBACKS.add(1, {"reason": reason.value})

    async def _write(
        self, ref: TransactionRef, payment: Payment, merge: Callable[[Document], Merge]
    ) -> Written | None:
        """Merge into one transaction that still names the payment; what to announce (None: nothing newer).

        ``merge`` and the check are decided again on every attempt against the copy just read, so a
        concurrent writer (ingest re-pointing the order, the enricher, another event about the same
        payment) is never overwritten and an older event never lands over a newer one. Raises
        ``_NotThisPaymentError`` when the transaction is gone or is another payment's now.
        """
        announce: list[tuple[str, ...]] = []

        def mutate(current: Document) -> Patch | None:
            announce.clear()
            if not payment.is_named_by(current):
                raise _NotThisPaymentError(ref.transaction_id)
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

        held = self._prefetched.transaction(ref) if self._prefetched is not None else None
        try:
            outcome = await read_modify_write(
                self._container, ref.transaction_id, partition_key=ref.event_id, mutate=mutate, current=held
            )
        except DocumentNotFoundError as error:
            raise _NotThisPaymentError(ref.transaction_id) from error
        if self._prefetched is not None:
            self._prefetched.remember(ref, outcome.document)
        if not announce:
            return None
        return Written(ref.transaction_id, ref.event_id, announce[0])
