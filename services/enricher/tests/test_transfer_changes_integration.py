"""A separate transfer made hours after its charge was enriched, through Service Bus, onto Cosmos DB.

The Stripe sandbox's world makes some separate transfers five hours after their charge. A payment
enriched in between is the platform's (no transfer exists yet); the sandbox's ``transfer.created``
becomes ``StripeTransferCreated`` as the webhook service publishes it, and the enricher's own
consumer, indexes and writer route the payment to the organizer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from test_payout_changes_integration import consume, enricher_on

from devstack.scenario import Route
from devstack.scenario.stripe_world import LATE_TRANSFER_SECONDS
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from devstack.testing import fresh_database
from otcommon.bus import (
    client_from_connection_string,
    queue_publisher,
    queue_source,
)
from otcommon.messages import StripeTransferCreated, make_envelope
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from devstack.scenario import StripeWorld

pytestmark = pytest.mark.integration

EVENTS_QUEUE = "stripe-events-queue"


@pytest.fixture
async def database(cosmos_client) -> AsyncIterator[tuple[str, CosmosContainer]]:
    """A provisioned database of the test's own, and its transactions container."""
    async with fresh_database(cosmos_client, "enricher-transfers") as name:
        spec = DEFAULT_TOPOLOGY.container("transactions")
        yield name, CosmosContainer.of(cosmos_client, database=name, spec=spec)


def transfer_created(event: dict[str, Any]) -> StripeTransferCreated:
    """What the webhook service publishes for a ``transfer.created`` event."""
    transfer = event["data"]["object"]
    return StripeTransferCreated(
        transfer_id=transfer["id"],
        destination_account_id=transfer["destination"],
        destination_payment_id=transfer["destination_payment"],
        source_charge_id=transfer["source_transaction"],
        transfer_created=datetime.fromtimestamp(transfer["created"], tz=UTC),
        stripe_event_id=event["id"],
    )


def routing(document: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(document.get(name) for name in ROUTING_FIELDS)


ROUTING_FIELDS = (
    "stripeRouteType",
    "stripeDestinationAccountId",
    "stripeTransferId",
    "stripeBalanceTransactionId",
    "stripeNetAmount",
    "stripeAvailableOn",
)


def expected_routing(world: StripeWorld, payment_id: str) -> tuple[Any, ...]:
    """The routing fields the generator's truth gives the payment now."""
    facts = world.payments[payment_id]
    money = facts.balance_transaction_id
    if facts.destination_payment_id is not None:
        money = world.charges[facts.destination_payment_id]["balance_transaction"]
    available_on = world.balance_transactions[money]["available_on"]
    return (
        "platform" if facts.route is Route.PLATFORM else "connected",
        facts.destination_account_id,
        facts.transfer_id,
        money,
        facts.net_amount / 100,
        datetime.fromtimestamp(available_on, UTC).date().isoformat(),
    )


async def test_a_transfer_made_after_the_payment_was_enriched_routes_it_to_the_organizer(
    start_servicebus, cosmos_connection, database
):
    database_name, transactions = database
    settings = StripeSandboxSettings(orders=300, sales_per_hour=20, rate_limit_per_second=10_000)
    async with run_stripe_sandbox(settings=settings) as sandbox:
        sold = set(sandbox.state.advance(minutes=4 * 60).new_ids)
        world = sandbox.world
        orders = [order for order in sandbox.state.scenario.orders() if order.id in sold and order.payment_id]
        waiting = [
            o.payment_id
            for o in orders
            if o.route is Route.SEPARATE_TRANSFER and world.payments[o.payment_id].route is Route.PLATFORM
        ]
        assert waiting, "some separate transfer of the last hours is not made yet"
        documents = [
            {"id": f"t-{o.id}", "eventId": o.event_id, "PaymentID": o.payment_id, "enrichmentState": "queued"}
            for o in orders
        ]
        for document in documents:
            await transactions.create(document)

        def now() -> datetime:
            return datetime.fromtimestamp(sandbox.state.scenario.now, UTC)

        async def stored() -> dict[str, dict[str, Any]]:
            return {
                d["PaymentID"]: await transactions.read(d["id"], partition_key=d["eventId"])
                for d in documents
            }

        with start_servicebus() as emulator:
            async with (
                client_from_connection_string(connection_string=emulator.connection_string) as bus,
                enricher_on(
                    sandbox, now, cosmos=cosmos_connection, database=database_name,
                    servicebus=emulator.connection_string,
                ) as enricher,
            ):  # fmt: skip
                for order in orders:
                    await enricher.handler.enrich(order.payment_id, requested_at=now())
                before = await stored()
                for payment_id in waiting:
                    assert before[payment_id]["stripeRouteType"] == "platform"
                    assert routing(before[payment_id]) == expected_routing(world, payment_id)

                known = set(sandbox.state.events.events)
                sandbox.state.advance(minutes=LATE_TRANSFER_SECONDS / 60)
                made = [
                    event
                    for event_id, event in sandbox.state.events.events.items()
                    if event_id not in known and event["type"] == "transfer.created"
                ]
                later = sandbox.world
                assert {later.payments[p].route for p in waiting} == {Route.SEPARATE_TRANSFER}
                publisher = queue_publisher(client=bus, queue_name=EVENTS_QUEUE)
                await publisher.publish([make_envelope(transfer_created(event)) for event in made])
                await publisher.close()
                await consume(
                    queue_source(client=bus, queue_name=EVENTS_QUEUE),
                    enricher.stripe_events_handler,
                    count=len(made),
                    max_concurrency=2,
                )
                after = await stored()

    assert {p: routing(after[p]) for p in waiting} == {p: expected_routing(later, p) for p in waiting}
    assert {after[p]["stripeRouteType"] for p in waiting} == {"connected"}
    # Payments no transfer moved keep what they had.
    unmoved = {p for p in before if p not in waiting}
    assert {p: routing(after[p]) for p in unmoved} == {p: routing(before[p]) for p in unmoved}
