"""A signed delivery, through the endpoint, the record and the applier, into the transaction."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer
from stripe_fixtures import event, fixture, sign
from test_applying import paid_by
from webhooks_fakes import build_service, container

from otcommon.bus import InMemoryBus, Subscription, Topic, TrueFilter
from otcommon.messages import decode_message
from webhooks.applier import StripeFactsApplier
from webhooks.transactions import PAYMENT_QUERY, TransactionFacts

TOPIC = "transaction-changes"


async def test_a_signed_dispute_delivery_reaches_the_transaction_once(settings):
    transactions = container("transactions", **{PAYMENT_QUERY: paid_by})
    await transactions.create({"id": "tx-1", "eventId": "ev-1", "PaymentID": "pi_1", "IsDisputed": False})
    bus = InMemoryBus(
        topics=[Topic(name=TOPIC, subscriptions=(Subscription(name="all", rules=(TrueFilter(),)),))]
    )
    applier = StripeFactsApplier(
        transactions=TransactionFacts(transactions),
        changes=bus.topic_publisher(topic=TOPIC),
        payouts=bus.publisher(queue="stripe-events-queue"),
    )
    service = build_service(settings, applier)
    dispute = fixture("dispute", payment_intent="pi_1", status="needs_response", reason="fraudulent")
    body = json.dumps(event("charge.dispute.created", dispute))
    async with TestClient(TestServer(service.app())) as client:
        for _ in range(2):  # Stripe's retry of a delivery it thinks failed
            response = await client.post(
                "/api/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)}
            )
            assert response.status == 200
            await service.processor.join()
    stored = await transactions.read("tx-1", partition_key="ev-1")
    assert (stored["stripeDisputeStatus"], stored["stripeDisputeReason"]) == ("needs_response", "fraudulent")
    assert stored["IsDisputed"] is False
    [announced] = [decode_message(raw) for raw in bus.active_messages(topic=TOPIC, subscription="all")]
    assert announced.message.change.value == "disputed"
    assert announced.correlation_id == "evt_test000001"
    assert next(service.events.documents())["state"] == "applied"
