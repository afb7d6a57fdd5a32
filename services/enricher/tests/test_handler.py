"""Messages in, transactions enriched: writes only enricher fields, idempotent, outcomes by failure kind."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
import structlog
from world import NOW, Clock, facts_container, new_world

from enricher.announcer import PublishingAnnouncer
from enricher.gateway import StripeUnavailableError
from enricher.handler import EnrichmentHandler
from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.lookup import TRANSACTIONS_OF_PAYMENTS
from enricher.payment_transactions import PaymentTransactionsIndex
from enricher.payouts import TRANSACTIONS_BY_BALANCE_TRANSACTION, PayoutChanges
from enricher.refresh import OPEN_DEPOSITS
from enricher.service import PaymentEnricher
from enricher.writer import EnrichmentWriter
from otcommon.bus import Consumer, ConsumerSettings, Delivery, InMemoryBus, PermanentError, RetryableError
from otcommon.enrichment import EnrichmentState
from otcommon.messages import (
    PaymentEnrichmentRequested,
    StripePayoutChanged,
    TransactionChanged,
    decode_message,
    make_envelope,
)
from otcommon.store import InMemoryContainer

QUEUE = "stripe-enrichment-queue"
PAYOUT_QUEUE = "stripe-events-queue"
TOPIC = "transaction-changes"
ORG = "acct_org0000"


def transactions_container() -> InMemoryContainer:
    return InMemoryContainer(
        "transactions",
        partition_key_path="/eventId",
        queries={
            TRANSACTIONS_OF_PAYMENTS: lambda docs, params: [
                d for d in docs if d.get("PaymentID") in params["@paymentIds"]
            ],
            OPEN_DEPOSITS: lambda docs, params: [
                {"PaymentID": d["PaymentID"], "stripePayoutId": d.get("stripePayoutId")}
                for d in docs
                if d.get("enrichmentState") == params["@state"]
                and d.get("depositStatus") == params["@deposit"]
            ],
            TRANSACTIONS_BY_BALANCE_TRANSACTION: lambda docs, params: [
                {"PaymentID": d["PaymentID"]}
                for d in docs
                if d.get("stripeBalanceTransactionId") in params["@balanceTransactions"]
            ],
        },
    )


def order(transaction_id: str, *, event: str, payment_id: str, state: str = "queued") -> dict:
    return {
        "id": transaction_id,
        "eventId": event,
        "PaymentID": payment_id,
        "TotalAmount": 10.99,
        "Name": "Buyer",
        "IsRefunded": False,
        "enrichmentState": state,
        "disputeStatus": "won",  # a field of the webhook service
    }


def payout_changed(
    payout_id: str, *, status: str, account: str | None, event: str = "evt_1", at: datetime = NOW
) -> StripePayoutChanged:
    """What the webhook service publishes for a ``payout.*`` event."""
    return StripePayoutChanged(
        payout_id=payout_id,
        account_id=account,
        status=status,
        stripe_event_id=event,
        stripe_event_created=at,
    )


class Setup:
    def __init__(self, *, stripe_world=None, transactions=None, index=None, facts=None) -> None:
        self.world = stripe_world or new_world()
        self.clock = Clock()
        self.transactions = transactions or transactions_container()
        self.bus = InMemoryBus()
        self.index_container = index or InMemoryContainer("stripe-index", partition_key_path="/id")
        self.facts_container = facts or facts_container()
        self.index = StripeIndex(self.index_container, facts=self.facts_container)
        gateway = self.world.stripe
        self.indexer = Indexer(gateway=gateway, index=self.index, clock=self.clock)
        self.handler = EnrichmentHandler(
            enricher=PaymentEnricher(
                gateway=gateway, index=self.index, indexer=self.indexer, clock=self.clock
            ),
            writer=EnrichmentWriter(
                self.transactions, payment_index=PaymentTransactionsIndex(self.facts_container)
            ),
            announcer=PublishingAnnouncer(self.bus.publisher(queue=TOPIC)),
            clock=self.clock,
        )
        self.payouts = PayoutChanges(
            gateway=gateway,
            index=self.index,
            indexer=self.indexer,
            transactions=self.transactions,
            payments=self.handler,
            clock=self.clock,
        )

    async def store(self, *documents: dict) -> None:
        for document in documents:
            await self.transactions.create(document)

    async def stored(self, transaction_id: str, event: str) -> dict:
        return await self.transactions.read(transaction_id, partition_key=event)

    def delivery(self, payment_id: str, *, delivery_count: int = 1) -> Delivery:
        message = PaymentEnrichmentRequested(
            payment_id=payment_id,
            transaction_id="t1",
            event_id="ev1",
            requested_at=NOW - timedelta(minutes=1),
        )
        return Delivery(envelope=make_envelope(message), delivery_count=delivery_count)

    def announced(self) -> list[TransactionChanged]:
        return [decode_message(raw).message for raw in self.bus.active_messages(queue=TOPIC)]  # type: ignore[misc]


async def test_every_transaction_of_the_payment_gets_the_fields_and_nothing_else_changes():
    setup = Setup()
    charge_id, intent_id, txn = setup.world.charge_on(ORG)
    setup.world.pay_out([txn], on=ORG)
    await setup.store(
        order("t1", event="ev1", payment_id=intent_id),
        order("t2", event="ev2", payment_id=intent_id),
        order("t3", event="ev1", payment_id="pi_other"),
    )
    await setup.handler(setup.delivery(intent_id))

    for transaction_id, event in (("t1", "ev1"), ("t2", "ev2")):
        stored = await setup.stored(transaction_id, event)
        assert stored["enrichmentState"] == EnrichmentState.ENRICHED
        assert stored["stripeRouteType"] == "connected"
        assert stored["stripeChargeId"] == charge_id
        assert stored["depositStatus"] == "paid"
        assert stored["stripeNetAmount"] == 10.37
        # Fields of the source and of the webhook service are as they were.
        assert (stored["TotalAmount"], stored["Name"], stored["disputeStatus"]) == (10.99, "Buyer", "won")
    untouched = await setup.stored("t3", "ev1")
    assert "stripeRouteType" not in untouched
    assert {change.transaction_id for change in setup.announced()} == {"t1", "t2"}


async def test_the_same_message_twice_writes_and_announces_once():
    setup = Setup()
    _, intent_id, _ = setup.world.charge_on(None)
    await setup.store(order("t1", event="ev1", payment_id=intent_id))
    await setup.handler(setup.delivery(intent_id))
    writes = setup.transactions.writes
    first = await setup.stored("t1", "ev1")

    setup.clock.advance(30)
    await setup.handler(setup.delivery(intent_id))
    assert setup.transactions.writes == writes
    assert (await setup.stored("t1", "ev1"))["_etag"] == first["_etag"]
    assert len(setup.announced()) == 1


async def test_a_redelivery_announces_again_with_the_same_message_id():
    setup = Setup()
    _, intent_id, _ = setup.world.charge_on(None)
    await setup.store(order("t1", event="ev1", payment_id=intent_id))
    sent: list[str] = []

    class Recording:
        async def announce(self, changes):
            sent.extend(make_envelope(change).message_id for change in changes)

    setup.handler._announcer = Recording()
    await setup.handler(setup.delivery(intent_id))
    setup.clock.advance(30)
    await setup.handler(setup.delivery(intent_id, delivery_count=2))
    assert len(sent) == 2
    assert sent[0] == sent[1]  # the broker's duplicate detection drops the second


async def test_a_payment_no_account_knows_is_unresolved_and_the_message_completes():
    setup = Setup()
    await setup.store(order("t1", event="ev1", payment_id="pi_nobodyknows"))
    await setup.handler(setup.delivery("pi_nobodyknows"))
    stored = await setup.stored("t1", "ev1")
    assert stored["enrichmentState"] == EnrichmentState.UNRESOLVED
    assert "not found on the platform" in stored["enrichmentReason"]


async def test_a_state_the_machine_does_not_allow_is_left_alone():
    setup = Setup()
    _, intent_id, _ = setup.world.charge_on(None)
    await setup.store(order("t1", event="ev1", payment_id=intent_id, state="unresolved"))
    await setup.handler(setup.delivery(intent_id))
    assert "stripeRouteType" not in await setup.stored("t1", "ev1")


async def test_a_revoked_key_dead_letters_with_an_alert():
    setup = Setup()
    setup.world.stripe.revoked = True
    with structlog.testing.capture_logs() as logs, pytest.raises(PermanentError) as raised:
        await setup.handler(setup.delivery("pi_any"))
    assert raised.value.reason == "StripeAccessDenied"
    assert any(entry.get("alert") for entry in logs)


async def test_stripe_unavailable_is_retried():
    setup = Setup()

    setup.world.stripe.failure = StripeUnavailableError(
        "accounts.list: RateLimitError", status=429, retry_after_seconds=2.0
    )
    with pytest.raises(RetryableError) as raised:
        await setup.handler(setup.delivery("pi_any"))
    assert raised.value.retry_after_seconds == 2.0


async def test_through_the_consumer_good_messages_complete_and_a_revoked_key_dead_letters():
    setup = Setup()
    _, intent_id, _ = setup.world.charge_on(None)
    await setup.store(order("t1", event="ev1", payment_id=intent_id))
    message = PaymentEnrichmentRequested(
        payment_id=intent_id, transaction_id="t1", event_id="ev1", requested_at=NOW
    )
    await setup.bus.publisher(queue=QUEUE).publish([make_envelope(message)])
    handled: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        try:
            await setup.handler(delivery)
        finally:
            handled.put_nowait(delivery)

    consumer = Consumer(
        source=setup.bus.source(queue=QUEUE),
        handler=handle,
        settings=ConsumerSettings(entity_name=QUEUE, max_wait_seconds=0.05),
    )
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(handled.get(), 10)
    assert (await setup.stored("t1", "ev1"))["enrichmentState"] == "enriched"

    setup.world.stripe.revoked = True
    setup.clock.advance(120)
    # Requested after the last listing: only Stripe can answer, and it refuses the key.
    later = message.model_copy(update={"payment_id": "pi_other", "requested_at": setup.clock()})
    await setup.bus.publisher(queue=QUEUE).publish([make_envelope(later)])
    [dead] = await asyncio.wait_for(setup.bus.wait_for_dead_letters(queue=QUEUE, count=1), 10)
    assert dead.reason == "StripeAccessDenied"
    await consumer.stop()
    await running


async def test_a_transaction_that_moved_to_another_payment_meanwhile_is_not_written():
    # A query answered before the order's PaymentID changed still names it (with the ETag of then);
    # the write, guarded by that ETag, reads the transaction again and re-checks.
    def answered_before_the_change(docs: list[dict], params: dict) -> list[dict]:
        return [{**doc, "PaymentID": params["@paymentIds"][0], "_etag": '"before"'} for doc in docs]

    stale = InMemoryContainer(
        "transactions",
        partition_key_path="/eventId",
        queries={TRANSACTIONS_OF_PAYMENTS: answered_before_the_change},
    )
    await stale.create(order("t1", event="ev1", payment_id="pi_new"))
    writer = EnrichmentWriter(stale)
    written = await writer.apply(payment_id="pi_old", fields={"enrichmentState": "unresolved"})
    assert written == []
    assert (await stale.read("t1", partition_key="ev1"))["enrichmentState"] == "queued"


async def test_the_writer_refuses_fields_it_does_not_own():
    writer = EnrichmentWriter(transactions_container())
    with pytest.raises(ValueError, match="does not own"):
        await writer.apply(payment_id="pi_1", fields={"TotalAmount": 1.0})
