"""Which events change what: refunds and disputes into transactions, each change announced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from otcommon.messages import (
    StripePayoutChanged,
    StripeTransferCreated,
    TransactionChange,
    TransactionChanged,
    make_envelope,
)
from webhooks.announcements import HeldPublisher
from webhooks.facts import merge_charge_refunds, merge_dispute, merge_refund
from webhooks.processor import NotYetApplicableError, Outcome
from webhooks.states import EventState, SettleReason
from webhooks.transactions import Payment, Planned

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from otcommon.bus import MessagePublisher
    from otcommon.store import Document
    from webhooks.facts import Merge
    from webhooks.models import StripeEvent
    from webhooks.transactions import TransactionFacts, Written

log = structlog.get_logger("webhooks.applier")

REFUND_EVENTS = frozenset({"charge.refund.updated", "refund.created", "refund.updated", "refund.failed"})
CHARGE_REFUND_EVENTS = frozenset({"charge.refunded"})
DISPUTE_PREFIX = "charge.dispute."
PAYOUT_PREFIX = "payout."
TRANSFER_CREATED = "transfer.created"


class NoMatchingTransactionError(NotYetApplicableError):
    """No stored transaction is paid by the event's charge or PaymentIntent (yet)."""


class StripeFactsApplier:
    """Applies refund and dispute events to the transactions they concern; hands payouts and transfers on.

    Payout and transfer events go to the enricher (``payouts``: its ``stripe-events-queue``).
    """

    def __init__(
        self, *, transactions: TransactionFacts, changes: MessagePublisher, payouts: MessagePublisher
    ) -> None:
        self._transactions = transactions
        self._changes = changes
        self._payouts = payouts

    async def apply(self, event: StripeEvent) -> Outcome:
        """Apply one event; ignored (with a reason) when it is not one this service acts on."""
        obj = event.data_object
        if event.type.startswith(PAYOUT_PREFIX) and obj.get("object") == "payout":
            await self._forward_payout(event, obj)
            return Outcome(EventState.APPLIED)
        if event.type == TRANSFER_CREATED and obj.get("object") == "transfer":
            await self._forward_transfer(event, obj)
            return Outcome(EventState.APPLIED)
        route = _route(event)
        if route is None:
            return Outcome(EventState.IGNORED, SettleReason.UNKNOWN_TYPE.value)
        merge, change, payment = route
        return await self._apply_to_payment(event, payment, merge, change)

    async def prepared_for(self, events: Sequence[StripeEvent]) -> StripeFactsApplier:
        """An applier for these events that reads their payments' index documents and transactions at once.

        Two queries for the batch instead of four point reads per event (``webhooks.prefetch``); then
        the events are decided on those copies and their patches written together, one transactional
        batch per partition (``TransactionFacts.write_ahead``); one whose patches did not all land is
        decided and written when it is applied. Its messages are held, for the processor to send
        those of every event applied since its last settle round at once (``BatchApplier``).
        """
        planned: list[Planned] = []
        for event in events:
            if (route := _route(event)) is not None:
                merge, _, payment = route
                planned.append(Planned(event.id, payment, merge))
        if not planned:
            return self
        transactions = await self._transactions.prefetch(plan.payment for plan in planned)
        await transactions.write_ahead(planned)
        return BatchApplier(
            transactions=transactions,
            changes=HeldPublisher(self._changes),
            payouts=HeldPublisher(self._payouts),
        )

    async def _apply_to_payment(
        self,
        event: StripeEvent,
        payment: Payment,
        merge: Callable[[Document], Merge],
        change: TransactionChange,
    ) -> Outcome:
        if not payment.ids():
            return Outcome(EventState.IGNORED, SettleReason.NO_PAYMENT_REFERENCE.value)
        writes = await self._transactions.write_payment(
            charge=payment.charge, payment_intent=payment.payment_intent, merge=merge, event_id=event.id
        )
        if not writes.found:
            # Often the payment is not stored yet (ingest runs hourly): the sweep retries for three days.
            raise NoMatchingTransactionError(event.id)
        for written in writes.written:
            await self._announce(event, written, change)
        return Outcome(EventState.APPLIED)

    async def _forward_payout(self, event: StripeEvent, payout: dict[str, Any]) -> None:
        # The deposit fields and the payout index are the enricher's (SPEC section 2): it applies the
        # payout to every transaction it holds, however many, off this request's path.
        arrival = payout.get("arrival_date")
        message = StripePayoutChanged(
            payout_id=str(payout.get("id")),
            account_id=event.account,
            status=str(payout.get("status") or "unknown"),
            arrival_date=datetime.fromtimestamp(arrival, tz=UTC) if isinstance(arrival, int) else None,
            automatic=payout.get("automatic") is not False,
            stripe_event_id=event.id,
            stripe_event_created=datetime.fromtimestamp(event.created, tz=UTC),
        )
        await self._payouts.publish([make_envelope(message, correlation_id=event.id)])

    async def _forward_transfer(self, event: StripeEvent, transfer: dict[str, Any]) -> None:
        # A separate transfer made after its charge was enriched moves the payment's routing fields,
        # which are the enricher's (SPEC section 2).
        created = transfer.get("created")
        message = StripeTransferCreated(
            transfer_id=str(transfer.get("id")),
            destination_account_id=str(_id(transfer.get("destination"))),
            destination_payment_id=_id(transfer.get("destination_payment")),
            source_charge_id=_id(transfer.get("source_transaction")),
            transfer_created=datetime.fromtimestamp(
                created if isinstance(created, int) else event.created, tz=UTC
            ),
            stripe_event_id=event.id,
        )
        await self._payouts.publish([make_envelope(message, correlation_id=event.id)])

    async def _announce(self, event: StripeEvent, written: Written, change: TransactionChange) -> None:
        message = TransactionChanged(
            transaction_id=written.transaction_id,
            event_id=written.event_id,
            change=change,
            changed_fields=written.changed_fields,
            changed_at=datetime.fromtimestamp(event.created, tz=UTC),
        )
        # Keyed on the Stripe event: announcing again after a crash sends the same message id.
        key = f"{written.transaction_id}/stripe/{event.id}"
        await self._changes.publish([make_envelope(message, key=key, correlation_id=event.id)])


class BatchApplier(StripeFactsApplier):
    """The applier of one worker's batch: its announcements and hand-offs wait for ``send_held``."""

    def __init__(
        self, *, transactions: TransactionFacts, changes: HeldPublisher, payouts: HeldPublisher
    ) -> None:
        super().__init__(transactions=transactions, changes=changes, payouts=payouts)
        self._held = (changes, payouts)

    async def send_held(self) -> set[str]:
        """Send the messages of the events applied since the last call; the events whose send failed."""
        unsent: set[str] = set()
        for publisher in self._held:
            unsent |= await publisher.send_held()
        return unsent


def _route(event: StripeEvent) -> tuple[Callable[[Document], Merge], TransactionChange, Payment] | None:
    """How a refund or dispute event is merged, what it changes, and the payment it names; else None."""
    obj = event.data_object
    if event.type in REFUND_EVENTS or event.type.startswith("refund."):
        merge, change = _merging(merge_refund, obj, event), TransactionChange.REFUNDED
        charge, payment_intent = obj.get("charge"), obj.get("payment_intent")
    elif event.type in CHARGE_REFUND_EVENTS:
        merge, change = _merging(merge_charge_refunds, obj, event), TransactionChange.REFUNDED
        charge, payment_intent = obj.get("id"), obj.get("payment_intent")
    elif event.type.startswith(DISPUTE_PREFIX) and obj.get("object") == "dispute":
        merge, change = _merging(merge_dispute, obj, event), TransactionChange.DISPUTED
        charge, payment_intent = obj.get("charge"), obj.get("payment_intent")
    else:
        return None
    return merge, change, Payment(_id(charge), _id(payment_intent))


def _merging(
    merge: Callable[..., Merge], obj: dict[str, Any], event: StripeEvent
) -> Callable[[Document], Merge]:
    return lambda document: merge(document, obj, event_id=event.id, created=event.created)


def _id(value: Any) -> str | None:
    # Expanded objects carry their id inside.
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None
