"""A transfer made after its charge was enriched: the payment follows it to the organizer, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from stripe_shapes import balance_transaction, charge, transfer
from test_handler import ORG, Setup, order, payout_changed
from world import DAY, NOW, T_NOW

from enricher.handler import PayoutChangeHandler, StripeEventsHandler
from enricher.transfers import TransferChanges, TransferOutcome
from otcommon.bus import Delivery, PermanentError
from otcommon.messages import PaymentEnrichmentRequested, StripeTransferCreated, make_envelope

LATER = T_NOW + 5 * 3600


class LateTransfer:
    """A platform charge of a separate transfer; the transfer to ORG is made hours after the charge."""

    def __init__(self) -> None:
        self.setup = Setup()
        world = self.setup.world
        self.group = "order_late1"
        self.charge, self.intent, self.platform_txn = world.charge_on(
            None, created=T_NOW - 60, available_on=T_NOW + 2 * DAY, transfer_group=self.group
        )
        self.events = StripeEventsHandler(
            payouts=PayoutChangeHandler(payouts=self.setup.payouts),
            transfers=TransferChanges(
                index=self.setup.index, indexer=self.setup.indexer, payments=self.setup.handler
            ),
        )

    def make_transfer(self) -> StripeTransferCreated:
        """Stripe makes the transfer and its ``py_`` payment on ORG; what the webhook service hands over."""
        world = self.setup.world
        self.transfer, self.py, self.py_txn = world.next_id("tr"), world.next_id("py"), world.next_id("txn")
        world.stripe.add(
            "balance_transaction",
            balance_transaction(
                self.py_txn, source=self.py, amount=1000, fee=0, available_on=T_NOW + 2 * DAY
            ),
            account=ORG,
        )
        world.stripe.add(
            "charge",
            charge(
                self.py, created=LATER, balance_txn=self.py_txn, amount=1000, source_transfer=self.transfer
            ),
            account=ORG,
        )
        made = transfer(self.transfer, destination=ORG, destination_payment=self.py)
        made.update(source_transaction=self.charge, transfer_group=self.group, created=LATER)
        world.stripe.add("transfer", made)
        self.setup.clock.advance(5 * 3600 + 60)
        return StripeTransferCreated(
            transfer_id=self.transfer,
            destination_account_id=ORG,
            destination_payment_id=self.py,
            source_charge_id=self.charge,
            transfer_created=NOW + timedelta(seconds=5 * 3600),
            stripe_event_id="evt_transfer1",
        )

    def delivery(self, message: StripeTransferCreated, *, count: int = 1) -> Delivery:
        return Delivery(envelope=make_envelope(message), delivery_count=count)

    async def routing(self, transaction_id: str) -> tuple[str | None, ...]:
        stored = await self.setup.stored(transaction_id, "ev1")
        return tuple(
            stored.get(name)
            for name in (
                "stripeRouteType",
                "stripeDestinationAccountId",
                "stripeTransferId",
                "stripeBalanceTransactionId",
                "stripeChargeId",
            )
        )


async def test_a_late_transfer_routes_the_enriched_payment_to_the_organizer_and_announces_it():
    late = LateTransfer()
    await late.setup.store(order("t1", event="ev1", payment_id=late.intent or ""))
    await late.setup.handler.enrich(late.intent or "", requested_at=NOW)
    assert await late.routing("t1") == ("platform", None, None, late.platform_txn, late.charge)
    await late.setup.indexer.wait_ahead()  # the payouts listed beside the first charges listings
    announced = len(late.setup.announced())

    message = late.make_transfer()
    calls_before = late.setup.world.stripe.calls.total
    await late.events(late.delivery(message))

    assert await late.routing("t1") == ("connected", ORG, late.transfer, late.py_txn, late.charge)
    # The event's facts are indexed as they are: only the destination's listing (for its py_ payment).
    assert late.setup.world.stripe.calls.total - calls_before == 1
    assert len(late.setup.announced()) == announced + 1

    # Delivered again: nothing more is written.
    stored = await late.setup.stored("t1", "ev1")
    await late.events(late.delivery(message, count=2))
    assert (await late.setup.stored("t1", "ev1"))["_etag"] == stored["_etag"]


async def test_a_transfer_before_its_charge_was_enriched_only_links_them():
    late = LateTransfer()
    message = late.make_transfer()
    result = await TransferChanges(
        index=late.setup.index, indexer=late.setup.indexer, payments=late.setup.handler
    ).apply(message)
    assert result.outcome is TransferOutcome.NOT_ENRICHED_YET
    assert late.setup.announced() == []
    link = await late.setup.index.get(f"transfer-of:{late.charge}")
    assert link is not None
    assert (link["transfer"], link["destination"], link["destinationPayment"]) == (
        late.transfer,
        ORG,
        late.py,
    )

    await late.setup.store(order("t1", event="ev1", payment_id=late.charge))
    await late.setup.handler.enrich(late.charge, requested_at=late.setup.clock())
    assert await late.routing("t1") == ("connected", ORG, late.transfer, late.py_txn, late.charge)


async def test_a_transfer_naming_no_charge_routes_nothing():
    late = LateTransfer()
    message = late.make_transfer().model_copy(update={"source_charge_id": None})
    result = await TransferChanges(
        index=late.setup.index, indexer=late.setup.indexer, payments=late.setup.handler
    ).apply(message)
    assert result.outcome is TransferOutcome.UNLINKED
    assert await late.setup.index.get(f"transfer-of:{late.charge}") is None


async def test_the_events_queue_still_applies_payouts_and_refuses_other_messages():
    late = LateTransfer()
    unknown_payout = payout_changed("po_missing", status="paid", account=ORG)
    await late.events(
        Delivery(envelope=make_envelope(unknown_payout), delivery_count=1)
    )  # completed: unknown to Stripe
    request = PaymentEnrichmentRequested(
        payment_id="pi_x1", transaction_id="t1", event_id="ev1", requested_at=NOW
    )
    with pytest.raises(PermanentError):
        await late.events(Delivery(envelope=make_envelope(request), delivery_count=1))
