"""A payout moved: its payments' deposit fields follow, once, in any order, through one path."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import structlog
from test_handler import ORG, PAYOUT_QUEUE, Setup, order, payout_changed
from world import DAY, NOW, T_NOW

from enricher.gateway import StripeUnavailableError
from enricher.handler import PayoutChangeHandler
from enricher.payouts import PayoutOutcome
from enricher.refresh import refresh_open_payouts
from enricher.writer import EnrichmentWriter
from otcommon.bus import Consumer, ConsumerSettings, Delivery, PermanentError, RetryableError
from otcommon.messages import (
    PaymentEnrichmentRequested,
    RawMessage,
    TransactionChange,
    encode_envelope,
    make_envelope,
)

OTHER = "acct_org0001"


class PendingPayout:
    """Two payments on ORG carried by one pending payout, one payment on another payout; all enriched."""

    def __init__(self, *, status: str = "pending") -> None:
        self.setup = Setup()
        world = self.setup.world
        self.first, _, first_txn = world.charge_on(ORG)
        _, self.second, second_txn = world.charge_on(ORG)
        self.elsewhere, _, elsewhere_txn = world.charge_on(ORG)
        self.payout_id = world.pay_out([first_txn, second_txn], on=ORG, status=status)
        self.other_payout = world.pay_out([elsewhere_txn], on=ORG, status=status)

    async def enrich_all(self) -> None:
        setup = self.setup
        await setup.store(
            order("t1", event="ev1", payment_id=self.first),
            order("t2", event="ev2", payment_id=self.first),
            order("t3", event="ev1", payment_id=self.second),
            order("t4", event="ev1", payment_id=self.elsewhere),
        )
        for payment_id in (self.first, self.second, self.elsewhere):
            await setup.handler.enrich(payment_id, requested_at=NOW)
        self.announced_before = len(setup.announced())

    def delivery(self, *, status: str, event: str = "evt_paid", at=NOW, count: int = 1) -> Delivery:
        message = payout_changed(self.payout_id, status=status, account=ORG, event=event, at=at)
        return Delivery(envelope=make_envelope(message), delivery_count=count)

    async def deposit(self, transaction_id: str, event: str) -> tuple[str, str | None, str | None]:
        stored = await self.setup.stored(transaction_id, event)
        return stored["depositStatus"], stored["stripePayoutStatus"], stored["stripePayoutId"]


async def paid_out() -> tuple[PendingPayout, PayoutChangeHandler]:
    scenario = PendingPayout()
    await scenario.enrich_all()
    scenario.setup.world.stripe.move_payout(scenario.payout_id, account=ORG, status="paid")
    handler = PayoutChangeHandler(payouts=scenario.setup.payouts)
    scenario.setup.clock.advance(60)
    await handler(scenario.delivery(status="paid"))
    return scenario, handler


async def test_a_payout_paid_moves_every_transaction_it_carries_and_announces_each():
    scenario = PendingPayout()
    await scenario.enrich_all()
    assert await scenario.deposit("t1", "ev1") == ("pending", "pending", scenario.payout_id)

    scenario.setup.world.stripe.move_payout(scenario.payout_id, account=ORG, status="paid")
    scenario.setup.clock.advance(60)
    await PayoutChangeHandler(payouts=scenario.setup.payouts)(scenario.delivery(status="paid"))

    for transaction_id, event in (("t1", "ev1"), ("t2", "ev2"), ("t3", "ev1")):
        assert await scenario.deposit(transaction_id, event) == ("paid", "paid", scenario.payout_id)
        stored = await scenario.setup.stored(transaction_id, event)
        assert (stored["TotalAmount"], stored["disputeStatus"]) == (10.99, "won")  # other writers' fields
    # A payment on another payout is not touched.
    assert await scenario.deposit("t4", "ev1") == ("pending", "pending", scenario.other_payout)
    announced = scenario.setup.announced()[scenario.announced_before :]
    assert sorted(change.transaction_id for change in announced) == ["t1", "t2", "t3"]
    assert {change.change for change in announced} == {TransactionChange.PAYOUT}
    assert all({"depositStatus", "stripePayoutStatus"} <= set(change.changed_fields) for change in announced)


async def test_the_same_change_again_writes_and_announces_nothing():
    scenario, handler = await paid_out()
    writes, announced = scenario.setup.transactions.writes, len(scenario.setup.announced())

    scenario.setup.clock.advance(60)
    # payout.paid after payout.updated: another event id, the same state.
    await handler(scenario.delivery(status="paid", event="evt_paid_again"))
    assert scenario.setup.transactions.writes == writes
    assert len(scenario.setup.announced()) == announced


async def test_a_redelivery_announces_again_under_the_same_message_ids():
    # The write may have succeeded and its announcement failed: the redelivery announces again, and
    # the broker's duplicate detection drops what had been sent after all.
    scenario, handler = await paid_out()
    first = {make_envelope(change).message_id for change in scenario.setup.announced()}
    sent: list[str] = []

    class Recording:
        async def announce(self, changes):
            sent.extend(make_envelope(change).message_id for change in changes)

    scenario.setup.handler._announcer = Recording()
    await handler(scenario.delivery(status="paid", count=2))
    assert len(sent) == 3
    assert set(sent) <= first


async def test_an_older_event_after_a_newer_one_changes_nothing_and_costs_no_call():
    scenario, handler = await paid_out()
    writes, calls = scenario.setup.transactions.writes, scenario.setup.world.stripe.calls.total

    await handler(scenario.delivery(status="in_transit", event="evt_older", at=NOW - timedelta(days=1)))
    assert scenario.setup.transactions.writes == writes
    assert scenario.setup.world.stripe.calls.total == calls
    assert await scenario.deposit("t1", "ev1") == ("paid", "paid", scenario.payout_id)


async def test_a_stripe_read_older_than_the_state_held_does_not_move_it_back():
    # The event says in_transit, the index holds pending, but Stripe's answer lags behind a paid
    # state another replica already applied: the stored state only moves forward.
    scenario, handler = await paid_out()
    scenario.setup.world.stripe.move_payout(scenario.payout_id, account=ORG, status="in_transit")
    await handler(scenario.delivery(status="paid", event="evt_lagging"))
    assert await scenario.deposit("t1", "ev1") == ("paid", "paid", scenario.payout_id)
    stored = await scenario.setup.index.get(f"payout:{scenario.payout_id}")
    assert stored is not None
    assert stored["status"] == "paid"


async def test_an_enrichment_that_read_the_payout_before_it_moved_does_not_write_the_older_state():
    scenario, _ = await paid_out()
    writer = EnrichmentWriter(scenario.setup.transactions)
    before = await scenario.setup.stored("t1", "ev1")
    older = {name: before[name] for name in ("stripePayoutId", "stripeRouteType")}
    older |= {"depositStatus": "pending", "stripePayoutStatus": "in_transit"}
    await writer.apply(payment_id=scenario.first, fields=older)
    assert await scenario.deposit("t1", "ev1") == ("paid", "paid", scenario.payout_id)


async def test_a_failure_after_paid_is_applied():
    scenario, handler = await paid_out()
    scenario.setup.world.stripe.move_payout(scenario.payout_id, account=ORG, status="failed")
    await handler(scenario.delivery(status="failed", event="evt_failed"))
    assert await scenario.deposit("t3", "ev1") == ("failed", "failed", scenario.payout_id)


async def test_a_payout_not_indexed_yet_has_its_contents_listed_once():
    scenario = PendingPayout()
    setup = scenario.setup
    # Enriched before any payout existed: pending, with no payout id.
    charge_id, _, txn = setup.world.charge_on(OTHER, available_on=T_NOW + DAY)
    await setup.store(order("t9", event="ev9", payment_id=charge_id))
    await setup.handler.enrich(charge_id, requested_at=NOW)
    assert await scenario.deposit("t9", "ev9") == ("pending", None, None)
    await setup.indexer.wait_ahead()  # the payouts listed beside the first charges listings
    listed_before = setup.world.stripe.calls.by_operation["balance_transactions.list"]

    setup.clock.advance(2 * DAY)
    payout_id = setup.world.pay_out([txn], on=OTHER, status="pending", created=T_NOW + DAY + 60)
    handler = PayoutChangeHandler(payouts=setup.payouts)
    message = payout_changed(payout_id, status="pending", account=OTHER, event="evt_created")
    await handler(Delivery(envelope=make_envelope(message), delivery_count=1))
    assert await scenario.deposit("t9", "ev9") == ("pending", "pending", payout_id)

    setup.world.stripe.move_payout(payout_id, account=OTHER, status="paid")
    message = payout_changed(payout_id, status="paid", account=OTHER, event="evt_paid9")
    await handler(Delivery(envelope=make_envelope(message), delivery_count=1))
    assert await scenario.deposit("t9", "ev9") == ("paid", "paid", payout_id)
    assert setup.world.stripe.calls.by_account[OTHER] > 0
    assert setup.world.stripe.calls.by_operation["balance_transactions.list"] == listed_before + 1


async def test_a_manual_payout_touches_nothing():
    setup = Setup()
    payout_id = setup.world.pay_out([], on=ORG, status="paid", automatic=False)
    result = await setup.payouts.apply(payout_id, account=ORG, reported_status="paid")
    assert result.outcome is PayoutOutcome.NOT_TRACEABLE
    assert setup.world.stripe.calls.by_operation["balance_transactions.list"] == 0


async def test_refresh_payouts_applies_open_payouts_through_the_same_path():
    scenario = PendingPayout()
    await scenario.enrich_all()
    setup = scenario.setup
    setup.world.stripe.move_payout(scenario.payout_id, account=ORG, status="paid")
    calls = setup.world.stripe.calls.by_operation.copy()

    report = await refresh_open_payouts(
        transactions=setup.transactions, handler=setup.handler, payouts=setup.payouts, clock=setup.clock
    )
    assert (report.payouts, report.payments) == (2, 3)
    assert report.by_outcome == {"paid": 2, "pending": 1}
    assert await scenario.deposit("t2", "ev2") == ("paid", "paid", scenario.payout_id)
    made = setup.world.stripe.calls.by_operation - calls
    assert made == {"payouts.retrieve": 2}  # one read per open payout, nothing listed
    announced = setup.announced()[scenario.announced_before :]
    assert {change.change for change in announced} == {TransactionChange.PAYOUT}


async def test_stripe_failures_become_retries_and_alerts():
    scenario = PendingPayout()
    await scenario.enrich_all()
    handler = PayoutChangeHandler(payouts=scenario.setup.payouts)
    scenario.setup.world.stripe.failure = StripeUnavailableError("payouts.retrieve: 503", status=503)
    with pytest.raises(RetryableError):
        await handler(scenario.delivery(status="paid"))
    scenario.setup.world.stripe.failure = None
    scenario.setup.world.stripe.revoked = True
    with structlog.testing.capture_logs() as logs, pytest.raises(PermanentError) as raised:
        await handler(scenario.delivery(status="paid"))
    assert raised.value.reason == "StripeAccessDenied"
    assert any(entry.get("alert") for entry in logs)


async def test_through_the_consumer_bad_messages_dead_letter_and_an_unknown_payout_completes():
    scenario = PendingPayout()
    await scenario.enrich_all()
    setup = scenario.setup
    handled: asyncio.Queue[Delivery] = asyncio.Queue()
    payout_handler = PayoutChangeHandler(payouts=setup.payouts)

    async def handle(delivery: Delivery) -> None:
        try:
            await payout_handler(delivery)
        finally:
            handled.put_nowait(delivery)

    consumer = Consumer(
        source=setup.bus.source(queue=PAYOUT_QUEUE),
        handler=handle,
        settings=ConsumerSettings(entity_name=PAYOUT_QUEUE, max_wait_seconds=0.05),
    )
    running = asyncio.create_task(consumer.run())
    publisher = setup.bus.publisher(queue=PAYOUT_QUEUE)
    # A payout another account owns is not found on this one: a business fact, completed with a log.
    wrong_account = payout_changed(scenario.payout_id, status="paid", account=OTHER, event="evt_wrong")
    with structlog.testing.capture_logs() as logs:
        await publisher.publish([make_envelope(wrong_account)])
        await asyncio.wait_for(handled.get(), 10)
    assert [entry["outcome"] for entry in logs if entry["event"] == "payout change applied"] == ["not_found"]

    unknown_status = payout_changed(scenario.payout_id, status="exploded", account=ORG, event="evt_bad")
    wrong_type = PaymentEnrichmentRequested(
        payment_id="pi_x", transaction_id="t1", event_id="ev1", requested_at=NOW
    )
    await publisher.publish([make_envelope(unknown_status), make_envelope(wrong_type)])
    raw = encode_envelope(make_envelope(payout_changed(scenario.payout_id, status="paid", account=ORG)))
    setup.bus.send_raw(
        queue=PAYOUT_QUEUE,
        message=RawMessage(
            body=raw.body.replace(b'"po_', b'"xx_'),
            subject=raw.subject,
            message_id="bad-payload",
            properties=raw.properties,
        ),
    )
    dead = await asyncio.wait_for(setup.bus.wait_for_dead_letters(queue=PAYOUT_QUEUE, count=3), 10)
    assert sorted(message.reason for message in dead) == [
        "InvalidPayload",
        "UnexpectedMessageType",
        "UnknownPayoutStatus",
    ]
    await consumer.stop()
    await running
    assert setup.bus.active_messages(queue=PAYOUT_QUEUE) == []
    assert await scenario.deposit("t1", "ev1") == ("pending", "pending", scenario.payout_id)
