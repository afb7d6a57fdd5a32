"""The transactions a Stripe object concerns, and the guarded write of the webhook service's fields.

Found by point reads: the enricher's index (``otcommon.payment_transactions``) names the
transactions of each charge and PaymentIntent id. Each listed transaction is checked, inside its
ETag-guarded write, to still name the payment; when a payment has no index document yet, or a listed
transaction does not check out, the cross-partition query finds them instead (counted), so a
stale or missing index costs a query, never a wrong or missed write.

A batch's events are decided ahead (``TransactionFacts.write_ahead``) on the copies its queries
read, and their patches are written together: one transactional batch per partition, each patch
under the ETag of the copy it was decided on. A batch that fails (a copy changed since) is sent
again patch by patch, so only the stale one fails; an event with a patch that failed, or one not
decided ahead, is decided and written on its own when it is applied, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import metrics

from otcommon.payment_transactions import (
    TransactionRef,
    listed_transactions,
    payment_transactions_key,
    payment_transactions_partition,
    ref_of,
)
from otcommon.store import (
    MAX_BATCH_OPERATIONS,
    BatchWrite,
    BatchWriteError,
    DocumentNotFoundError,
    Patch,
    read_modify_write,
)
from webhooks.prefetch import Prefetched, prefetch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from otcommon.store import Document, DocumentContainer, PatchOperation
    from webhooks.facts import Merge

PAYMENT_QUERY = (
    "SELECT * FROM c WHERE c.PaymentID = @charge OR c.PaymentID = @paymentIntent "
    "OR c.stripeChargeId = @charge OR c.stripePaymentIntentId = @paymentIntent"
)
"""Transactions paid by a charge or PaymentIntent, across event partitions (the fallback)."""

# Never a real Stripe id, and never empty: box-office cash rows have an empty PaymentID.
_NO_ID = "none:"

log = structlog.get_logger("webhooks.transactions")
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
        payment_id = transaction.get("PaymentID")
        return bool(
            (payment_id and payment_id in (self.charge, self.payment_intent))
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


@dataclass(frozen=True, slots=True)
class Planned:
    """An event of a batch to decide ahead: its id, the payment it names, and how it merges."""

    event_id: str
    payment: Payment
    merge: Callable[[Document], Merge]


@dataclass(slots=True)
class _Ahead:
    """One event decided ahead: its writes, and the transactions it needs written."""

    writes: PaymentWrites
    refs: list[TransactionRef]


class _NotThisPaymentError(Exception):
    """A listed transaction is gone, or names another payment now."""


class TransactionFacts:
    """Finds transactions by payment and writes Stripe's facts into them, ETag-guarded."""

    def __init__(self, container: DocumentContainer, *, index: DocumentContainer | None = None) -> None:
        self._container = container
        self._index = index
        self._prefetched: Prefetched | None = None
        self._decided: dict[str, PaymentWrites] = {}
        """Events decided ahead whose writes all landed, by event id (a batch's view only)."""
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
        view._decided = {}  # noqa: SLF001 - the copy is of this class
        return view

    async def write_ahead(self, planned: Sequence[Planned]) -> int:
        """Decide these events on the copies read ahead and write their patches together; how many landed.

        Each event is decided in order on the copies as the earlier events of the batch left them,
        exactly as ``write_payment`` decides it (the listed transactions, each still naming the
        payment, merged newer over older). An event the copies cannot decide (an id not read ahead,
        no index document, a listed transaction gone or re-pointed, a merge that raises) is left
        undecided. The patches of each transaction are then one patch, and the patches of one
        partition one transactional batch, each under the ETag of the copy read: a batch that fails
        is sent again patch by patch, so a copy changed since fails alone. An event whose patches
        all landed is not written again when it is applied (``write_payment`` with its id returns
        what it did); any other is decided and written then, on what is stored.
        """
        found = self._prefetched
        if found is None:
            return 0
        working: dict[TransactionRef, Document] = {}
        changes: dict[TransactionRef, dict[str, Any]] = {}
        ahead: dict[str, _Ahead] = {}
        for plan in planned:
            decided = self._decide_ahead(plan, found, working, changes)
            if decided is not None:
                ahead[plan.event_id] = decided
        failed = await self._write_changes(found, changes)
        landed = {event_id: each.writes for event_id, each in ahead.items() if failed.isdisjoint(each.refs)}
        self._decided.update(landed)
        return len(landed)

    def _decide_ahead(
        self,
        plan: Planned,
        found: Prefetched,
        working: dict[TransactionRef, Document],
        changes: dict[TransactionRef, dict[str, Any]],
    ) -> _Ahead | None:
        keys = [payment_transactions_key(stripe_id) for stripe_id in plan.payment.ids()]
        if not keys or not all(found.covers(key) for key in keys):
            return None
        documents = [found.index_documents[key] for key in keys]
        refs = sorted({ref for document in documents if document for ref in listed_transactions(document)})
        decisions: list[tuple[TransactionRef, Document, Merge]] = []
        for ref in refs:
            current = working.get(ref) or found.transaction(ref)
            if current is None or "_etag" not in current or not plan.payment.is_named_by(current):
                return None  # gone, not read, or another payment's now: decided on its own later
            try:
                decisions.append((ref, current, plan.merge(current)))
            except Exception:  # noqa: BLE001 - the event's own apply meets it again and counts it
                return None
        if not decisions:
            return None
        writes = PaymentWrites()
        for ref, current, merged in decisions:
            if merged.already_applied:
                writes.add(Written(ref.transaction_id, ref.event_id, ()))
            elif merged.fields is None:
                writes.add(None)
            else:
                working[ref] = {**current, **merged.fields}
                changes.setdefault(ref, {}).update(merged.fields)
                writes.add(Written(ref.transaction_id, ref.event_id, tuple(merged.fields)))
        return _Ahead(writes, refs)

    async def _write_changes(
        self, found: Prefetched, changes: dict[TransactionRef, dict[str, Any]]
    ) -> set[TransactionRef]:
        """Write each transaction's patch, one transactional batch per partition; the refs that failed."""
        by_partition: dict[str, list[TransactionRef]] = {}
        for ref in changes:
            by_partition.setdefault(ref.event_id, []).append(ref)
        chunks = [
            refs[start : start + MAX_BATCH_OPERATIONS]
            for refs in by_partition.values()
            for start in range(0, len(refs), MAX_BATCH_OPERATIONS)
        ]
        failed: set[TransactionRef] = set()
        results = await asyncio.gather(*(self._write_chunk(found, refs, changes) for refs in chunks))
        for refs, written in zip(chunks, results, strict=True):
            for ref in refs:
                if ref not in written:
                    failed.add(ref)
                if ref in written and "_etag" in written[ref]:
                    found.remember(ref, written[ref])
                else:
                    found.forget(ref)  # changed since it was read, or not returned: read it again
        return failed

    async def _write_chunk(
        self, found: Prefetched, refs: list[TransactionRef], changes: dict[TransactionRef, dict[str, Any]]
    ) -> dict[TransactionRef, Document]:
        """Patches of one partition under their copies' ETags: together, else one by one; those written."""

        def etag(ref: TransactionRef) -> str:
            return str(found.transactions[ref]["_etag"])  # decided ahead only on a copy with its ETag

        if len(refs) > 1:
            writes = [
                BatchWrite.patch(ref.transaction_id, _set_operations(changes[ref]), etag=etag(ref))
                for ref in refs
            ]
            try:
                documents = await self._container.write_batch(writes, partition_key=refs[0].event_id)
            except BatchWriteError:
                pass  # nothing of it was written: each patch alone, below, so only the stale one fails
            except Exception:  # each event is decided and written on its own later, and meets the error
                log.warning("writing a batch's patches failed", transactions=len(refs), exc_info=True)
                return {}
            else:
                return dict(zip(refs, documents, strict=True))
        written: dict[TransactionRef, Document] = {}

        async def alone(ref: TransactionRef) -> None:
            with contextlib.suppress(Exception):  # the event decides and writes it again, and meets the error
                written[ref] = await self._container.patch(
                    ref.transaction_id,
                    partition_key=ref.event_id,
                    operations=_set_operations(changes[ref]),
                    etag=etag(ref),
                )

        await asyncio.gather(*(alone(ref) for ref in refs))
        return written

    async def write_payment(
        self,
        *,
        charge: str | None,
        payment_intent: str | None,
        merge: Callable[[Document], Merge],
        event_id: str | None = None,
    ) -> PaymentWrites:
        """Merge the event's facts into every transaction of the payment (none found: ``found == 0``).

        ``event_id``: the event's, whose writes ``write_ahead`` may have made already.
        """
        if event_id is not None and (ahead := self._decided.pop(event_id, None)) is not None:
            return ahead
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
            return await self._index.read(key, partition_key=payment_transactions_partition(key))
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
            return Patch(_set_operations(merged.fields))

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


def _set_operations(fields: dict[str, Any]) -> list[PatchOperation]:
    """The patch setting these fields (the webhook service's own) and no other."""
    return [{"op": "set", "path": f"/{name}", "value": value} for name, value in fields.items()]
