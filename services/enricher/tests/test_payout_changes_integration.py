"""Payout events from the Stripe sandbox, through the Service Bus emulator, onto transactions in Cosmos DB.

The sandbox's world moves on (a payout goes pending -> in_transit -> paid or failed); its ``payout.*``
events become ``StripePayoutChanged`` as the webhook service publishes them, and the enricher's own
consumer, gateway, indexes and writer apply them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from devstack.testing import fresh_database
from enricher.app import Enricher, open_enricher
from enricher.settings import EnricherSettings
from otcommon.bus import (
    Consumer,
    ConsumerSettings,
    client_from_connection_string,
    queue_publisher,
    queue_source,
    subscription_source,
    topic_publisher,
)
from otcommon.messages import (
    StripePayoutChanged,
    TransactionChange,
    TransactionChanged,
    decode_message,
    make_envelope,
)
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from otcommon.bus import Delivery
    from otcommon.settings import CosmosConnection

pytestmark = pytest.mark.integration

PAYOUT_QUEUE = "stripe-events-queue"
TOPIC = "transaction-changes"


@pytest.fixture
async def database(cosmos_client) -> AsyncIterator[tuple[str, CosmosContainer]]:
    """A provisioned database of the test's own, and its transactions container."""
    async with fresh_database(cosmos_client, "enricher-payouts") as name:
        spec = DEFAULT_TOPOLOGY.container("transactions")
        yield name, CosmosContainer.of(cosmos_client, database=name, spec=spec)


def payout_changed(event: dict[str, Any]) -> StripePayoutChanged:
    """What the webhook service publishes for a ``payout.*`` event."""
    payout = event["data"]["object"]
    return StripePayoutChanged(
        payout_id=payout["id"],
        account_id=event.get("account"),
        status=payout["status"],
        arrival_date=datetime.fromtimestamp(payout["arrival_date"], tz=UTC),
        automatic=payout["automatic"],
        stripe_event_id=event["id"],
        stripe_event_created=datetime.fromtimestamp(event["created"], tz=UTC),
    )


class PayoutWorld:
    """The sandbox moved to a moment with a pending automatic payout that carries several payments."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        sandbox.state.advance(minutes=12 * 60 + 1)  # past midnight: the day's payouts are created pending
        world = sandbox.world
        carried: dict[str, list[str]] = {}
        for payment_id, facts in world.payments.items():
            if facts.payout_id and world.payouts[facts.payout_id]["status"] == "pending":
                carried.setdefault(facts.payout_id, []).append(payment_id)
        self.payout_id, self.payments = max(carried.items(), key=lambda item: len(item[1]))
        assert len(self.payments) > 1  # the point is a payout of several payments

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sandbox.state.scenario.now, UTC)

    def advance_to(self, unix_seconds: int) -> list[dict[str, Any]]:
        """Move the world to a moment; the payout's events of that move, oldest first."""
        known = set(self.sandbox.state.events.events)
        self.sandbox.state.advance(minutes=(unix_seconds - self.sandbox.state.scenario.now) / 60)
        return [
            event
            for event_id, event in self.sandbox.state.events.events.items()
            if event_id not in known and event["data"]["object"]["id"] == self.payout_id
        ]

    @property
    def payout(self) -> dict[str, Any]:
        return self.sandbox.world.payouts[self.payout_id]


async def consume(
    source, handler, *, count: int, entity_name: str = PAYOUT_QUEUE, max_concurrency: int = 1
) -> None:
    """Run a consumer until it has handled ``count`` deliveries, then stop it (drained)."""
    handled: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        try:
            await handler(delivery)
        finally:
            handled.put_nowait(delivery)

    consumer = Consumer(
        source=source,
        handler=handle,
        settings=ConsumerSettings(
            entity_name=entity_name, max_concurrency=max_concurrency, max_wait_seconds=0.5
        ),
    )
    running = asyncio.create_task(consumer.run())
    try:
        for _ in range(count):
            await asyncio.wait_for(handled.get(), 60)
    finally:
        await consumer.stop()
        await running


async def payout_announcements(source, *, until: set[str] | None = None, marker: str | None = None):
    """``change: payout`` announcements read from the subscription (markers and others skipped).

    Reads until every transaction in ``until`` was announced, or until ``marker`` arrives. A topic
    does not promise the order in which its subscription receives messages sent one after another,
    so a phase waits for what it expects rather than for a marker.
    """
    seen: list[TransactionChanged] = []
    for _ in range(60):
        for received in await source.receive(max_messages=50, max_wait_seconds=1.0):
            message = decode_message(received.raw).message
            await received.complete()
            assert isinstance(message, TransactionChanged)
            if message.transaction_id == marker:
                return seen
            if message.change is TransactionChange.PAYOUT:
                seen.append(message)
        if until is not None and until <= {change.transaction_id for change in seen}:
            return seen
    pytest.fail(f"announcements incomplete after a minute: {sorted(c.transaction_id for c in seen)}")


def enricher_on(
    sandbox, clock, *, cosmos: CosmosConnection, database: str, servicebus: str
) -> AbstractAsyncContextManager[Enricher]:
    """The service's own components (`open_enricher`), on the sandbox's clock."""
    settings = EnricherSettings(
        cosmos_endpoint=cosmos.endpoint,
        cosmos_key=cosmos.key,
        cosmos_database=database,
        servicebus_connection_string=SecretStr(servicebus),
        stripe_api_key=SecretStr(sandbox.settings.secret_key),
        stripe_api_base=sandbox.base_url,
        stripe_requests_per_second=1_000,
    )
    return open_enricher(settings, clock=clock)


async def test_payout_events_move_every_transaction_once_and_never_back(
    start_servicebus, cosmos_connection, database
):
    database_name, transactions = database
    settings = StripeSandboxSettings(orders=300, rate_limit_per_second=10_000)
    async with run_stripe_sandbox(settings=settings) as sandbox:
        world = PayoutWorld(sandbox)
        # The first payment backs rows of two events: both follow its payout.
        rows = [(world.payments[0], "ev-b")] + [(payment_id, "ev-a") for payment_id in world.payments]
        documents = [
            {"id": f"t-{payment_id}-{event}", "eventId": event, "PaymentID": payment_id}
            for payment_id, event in rows
        ]
        documents.append({"id": "t-unrelated", "eventId": "ev-a", "PaymentID": "pi_notinthispayout"})
        for document in documents:
            await transactions.create({**document, "enrichmentState": "queued", "TotalAmount": 12.5})
        carried = documents[:-1]

        async def deposits() -> dict[str, tuple[str, str, str]]:
            found = {}
            for document in carried:
                stored = await transactions.read(document["id"], partition_key=document["eventId"])
                found[document["id"]] = (
                    stored["depositStatus"],
                    stored["stripePayoutStatus"],
                    stored["stripePayoutId"],
                )
            return found

        async def etags() -> dict[str, str]:
            return {
                d["id"]: (await transactions.read(d["id"], partition_key=d["eventId"]))["_etag"]
                for d in documents
            }

        with start_servicebus() as emulator:
            async with (
                client_from_connection_string(connection_string=emulator.connection_string) as bus,
                enricher_on(
                    sandbox, world.now, cosmos=cosmos_connection, database=database_name,
                    servicebus=emulator.connection_string,
                ) as enricher,
            ):  # fmt: skip
                enrich, apply = enricher.handler, enricher.stripe_events_handler
                changes = topic_publisher(client=bus, topic_name=TOPIC)
                for payment_id in world.payments:
                    await enrich.enrich(payment_id, requested_at=world.now())
                pending = ("pending", "pending", world.payout_id)
                assert set((await deposits()).values()) == {pending}

                in_transit_events = world.advance_to(world.payout["created"] + 6 * 3600 + 60)
                assert [payout_changed(e).status for e in in_transit_events] == ["in_transit"]
                final_events = world.advance_to(world.payout["arrival_date"] + 60)
                final = world.payout["status"]
                assert final in {"paid", "failed"}
                assert {payout_changed(e).status for e in final_events} == {final}

                audit = subscription_source(client=bus, topic_name=TOPIC, subscription_name="audit")
                publisher = queue_publisher(client=bus, queue_name=PAYOUT_QUEUE)
                # The newest events arrive first.
                await publisher.publish([make_envelope(payout_changed(e)) for e in final_events])
                await consume(
                    queue_source(client=bus, queue_name=PAYOUT_QUEUE), apply, count=len(final_events)
                )

                truth = {sandbox.world.payments[p].deposit_status for p in world.payments}
                assert truth == {"paid" if final == "paid" else "failed"}
                assert set((await deposits()).values()) == {(truth.pop(), final, world.payout_id)}
                unrelated = await transactions.read("t-unrelated", partition_key="ev-a")
                assert "depositStatus" not in unrelated
                announced = await payout_announcements(audit, until={d["id"] for d in carried})
                assert sorted(change.transaction_id for change in announced) == sorted(
                    d["id"] for d in carried
                )

                # Then the older in_transit event, and the final event published again (a new message id).
                before = await etags()
                late = [make_envelope(payout_changed(e)) for e in in_transit_events]
                again = make_envelope(payout_changed(final_events[-1]), message_id=str(uuid.uuid4()))
                await publisher.publish([*late, again])
                await consume(queue_source(client=bus, queue_name=PAYOUT_QUEUE), apply, count=2)
                assert await etags() == before
                assert (
                    await payout_announcements(audit, marker=await publish_marker(changes, "after-late"))
                    == []
                )
                await publisher.close()
                await audit.close()
                await changes.close()


async def publish_marker(changes, name: str) -> str:
    """Publish a TransactionChanged that marks a point in the topic; its transaction id."""
    marker = f"marker-{name}-{uuid.uuid4().hex[:8]}"
    await changes.publish(
        [
            make_envelope(
                TransactionChanged(
                    transaction_id=marker,
                    event_id="markers",
                    change=TransactionChange.UPDATED,
                    changed_at=datetime.now(UTC),
                )
            )
        ]
    )
    return marker
