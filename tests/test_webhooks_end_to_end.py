"""End to end: the Stripe sandbox delivers its signed events to `python -m webhooks serve`, over the
Cosmos DB stand-in and the Service Bus emulator, for transactions ingest read from the OpenTickets
sandbox (`python -m ingest sync --once`). The Stripe clock moves (refunds, disputes, payouts happen);
the OpenTickets side is not read again, so only the webhooks can bring the transactions up to date.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from system_processes import OPENTICKETS_SANDBOX_CLIENT, fresh_database, run, serve, service_env, stop

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import run_sandbox
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from otcommon.messages import decode_service_bus_message
from otcommon.served import served_is_disputed, served_is_refunded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO = {"seed": 11, "orders": 300, "events": 3, "organizers": 3}
PLATFORM_SECRET = "whsec_e2e_platform"
CONNECT_SECRET = "whsec_e2e_connect"
PAYOUT_QUEUE = "stripe-events-queue"
PAYMENT_EVENTS = ("refund.", "charge.refund", "charge.dispute.")


@dataclass
class Environment:
    env: dict[str, str]
    database: Any
    servicebus: str

    async def run(self, *args: str) -> tuple[int, str]:
        """`python ARGS` (``-m MODULE ...``) to its end: its exit code and its stderr."""
        assert args[0] == "-m", args
        finished = await run(args[1], *args[2:], env=self.env)
        return finished.code, finished.err

    async def rows(self, container: str, query: str = "SELECT * FROM c") -> list[dict[str, Any]]:
        return [row async for row in self.database.get_container_client(container).query_items(query)]


@pytest.fixture
async def environment(cosmos_client, cosmos_connection, start_servicebus) -> AsyncIterator[Environment]:
    with start_servicebus() as servicebus:
        async with fresh_database(cosmos_client, "e2e") as database:
            env = service_env(
                cosmos_connection, database, servicebus=servicebus.connection_string,
                **OPENTICKETS_SANDBOX_CLIENT, OT_WEBHOOKS_PLATFORM_SECRETS=PLATFORM_SECRET,
                OT_WEBHOOKS_CONNECT_SECRETS=CONNECT_SECRET, OT_WEBHOOKS_SWEEP_SECONDS="2",
                OT_WEBHOOKS_SWEEP_AGE_SECONDS="1",
            )  # fmt: skip
            yield Environment(env, cosmos_client.get_database_client(database), servicebus.connection_string)


async def serve_webhooks(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m webhooks serve` once ready, with the address Stripe delivers to."""
    process, base = await serve("webhooks", env=env, port_setting="OT_WEBHOOKS_HTTP_PORT")
    return process, f"{base}/api/webhooks/stripe"


def waiting_for_a_payment(
    event: dict[str, Any], ingested: set[str], payment_of_charge: dict[str, str]
) -> bool:
    """A refund or dispute of a sale made after ingest ran: it waits (received) for its payment."""
    if not event["type"].startswith(PAYMENT_EVENTS):
        return False
    obj = event["data"]["object"]
    charge = obj["id"] if obj["object"] == "charge" else obj["charge"]
    return payment_of_charge[charge] not in ingested


async def settled(environment: Environment, waiting: set[str]) -> dict[str, dict[str, Any]]:
    """Every event record once all but the waiting ones left ``received``."""
    async with asyncio.timeout(120):
        while True:
            records = {row["id"]: row for row in await environment.rows("webhook-events")}
            if {i for i, row in records.items() if row["state"] == "received"} == waiting:
                return records
            await asyncio.sleep(0.5)


async def payout_messages(connection_string: str, expected: int) -> list[Any]:
    found: list[Any] = []
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        receiver = client.get_queue_receiver(
            PAYOUT_QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        )
        async with receiver, asyncio.timeout(60):
            while len(found) < expected:
                batch = await receiver.receive_messages(max_message_count=50, max_wait_time=5)
                found.extend(decode_service_bus_message(message).message for message in batch)
    return found


async def test_delivered_refunds_and_disputes_bring_every_transaction_to_the_generators_truth(environment):
    async with run_sandbox(settings=SandboxSettings(**SCENARIO)) as opentickets:
        environment.env["OT_OPENTICKETS_BASE_URL"] = opentickets.base_url
        code, err = await environment.run("-m", "ingest", "sync", "--once")
        assert code == 0, err
    ingested = {row["id"]: row for row in await environment.rows("transactions")}
    assert len(ingested) == SCENARIO["orders"]

    webhooks, url = await serve_webhooks(environment.env)
    stripe_settings = StripeSandboxSettings(
        **SCENARIO, webhook_url=url, webhook_secret=PLATFORM_SECRET, connect_webhook_url=url,
        connect_webhook_secret=CONNECT_SECRET,
    )  # fmt: skip
    try:
        async with run_stripe_sandbox(settings=stripe_settings) as stripe:
            for _ in range(4):  # two days, in half-days
                stripe.state.advance(minutes=720, refunds=5, disputes=3)
                await stripe.state.webhooks.drain()
            log = stripe.state.events.events
            assert stripe.state.webhooks.outcomes == {"delivered": len(log)}  # every delivery got a 2xx
            truth = {row["id"]: row for row in stripe.state.scenario.transactions()}
            world = stripe.world
        payment_of_charge = {facts.charge_id: payment for payment, facts in world.payments.items()}
        paid = {row["PaymentID"] for row in ingested.values() if row["PaymentID"]}
        waiting = {i for i, event in log.items() if waiting_for_a_payment(event, paid, payment_of_charge)}
        records = await settled(environment, waiting)
    finally:
        await stop(webhooks)

    assert set(records) == set(log)  # every delivered event is recorded, once (ids are the keys)
    stored = {row["id"]: row for row in await environment.rows("transactions")}
    # Stripe knows card payments only: a cash order refunded at the box office is the source's to tell.
    card = {i for i, row in ingested.items() if row["PaymentID"]}
    refunded = {i for i in card if served_is_refunded(stored[i])}
    disputed = {i for i in card if served_is_disputed(stored[i])}
    assert refunded == {i for i in card if truth[i]["IsRefunded"]}
    assert disputed == {i for i in card if truth[i]["IsDisputed"]}
    # The changes came from Stripe's facts, not from the source's flags (ingest ran before them).
    assert any(not ingested[i]["IsRefunded"] for i in refunded)
    assert any(not ingested[i]["IsDisputed"] for i in disputed)
    by_payment = {row["PaymentID"]: row for row in stored.values() if row["PaymentID"]}
    for event in log.values():
        obj = event["data"]["object"]
        if event["type"].startswith(PAYMENT_EVENTS) and event["id"] not in waiting:
            row = by_payment[payment_of_charge[obj["id"] if obj["object"] == "charge" else obj["charge"]]]
            if obj["object"] == "refund":
                assert row["stripeRefunds"][obj["id"]]["status"] == world.refunds[obj["id"]]["status"]
            if obj["object"] == "dispute":
                assert row["stripeDisputes"][obj["id"]]["status"] == world.disputes[obj["id"]]["status"]

    # Payouts are the enricher's to apply: each payout event is handed over on its queue, once.
    payout_events = {i for i, event in log.items() if event["type"].startswith("payout.")}
    assert payout_events
    assert {records[i]["state"] for i in payout_events} == {"applied"}
    handed_over = await payout_messages(environment.servicebus, len(payout_events))
    assert sorted(message.stripe_event_id for message in handed_over) == sorted(payout_events)
