"""Announcements and payout hand-offs reach the real Service Bus (the emulator) with their ids."""

from __future__ import annotations

import json
import uuid

import pytest
from stripe_fixtures import event, fixture

from otcommon.bus import client_from_connection_string, queue_publisher, queue_source, subscription_source
from otcommon.bus import topic_publisher as make_topic_publisher
from otcommon.messages import decode_message
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer
from webhooks.applier import StripeFactsApplier
from webhooks.models import StripeEvent
from webhooks.transactions import TransactionFacts

pytestmark = pytest.mark.integration

T0 = 1_700_000_000


async def received(source, *, count: int) -> list:
    messages = []
    for _ in range(20):
        for message in await source.receive(max_messages=count, max_wait_seconds=1.0):
            messages.append(decode_message(message.raw))
            await message.complete()
        if len(messages) >= count:
            break
    return messages


async def test_a_refund_is_announced_and_a_payout_handed_over_through_service_bus(
    start_servicebus, cosmos_client, provisioned
):
    tag = uuid.uuid4().hex[:10]
    spec = DEFAULT_TOPOLOGY.container("transactions")
    transactions = CosmosContainer.of(cosmos_client, database=provisioned.database, spec=spec)
    await transactions.create({"id": f"tx-{tag}", "eventId": f"ev-{tag}", "PaymentID": f"pi_{tag}"})
    refund = fixture("refund", payment_intent=f"pi_{tag}", charge=None, amount=700)
    payout = fixture("payout", id=f"po_{tag}", status="failed")
    with start_servicebus() as emulator:
        async with client_from_connection_string(connection_string=emulator.connection_string) as client:
            changes = make_topic_publisher(client=client, topic_name="transaction-changes")
            payouts = queue_publisher(client=client, queue_name="stripe-events-queue")
            applier = StripeFactsApplier(
                transactions=TransactionFacts(transactions), changes=changes, payouts=payouts
            )
            await applier.apply(StripeEvent.parse(json.dumps(event("refund.created", refund, created=T0))))
            payout_event = event("payout.failed", payout, n=2, created=T0, account="acct_org1")
            await applier.apply(StripeEvent.parse(json.dumps(payout_event)))
            await changes.close()
            await payouts.close()
            audit = subscription_source(
                client=client, topic_name="transaction-changes", subscription_name="audit"
            )
            [announced] = await received(audit, count=1)
            await audit.close()
            handed = queue_source(client=client, queue_name="stripe-events-queue")
            [forwarded] = await received(handed, count=1)
            await handed.close()
    assert announced.message.transaction_id == f"tx-{tag}"
    assert announced.correlation_id == "evt_test000001"
    assert (forwarded.message.payout_id, forwarded.message.status) == (f"po_{tag}", "failed")
    assert forwarded.message.account_id == "acct_org1"
