"""End to end: the Stripe sandbox delivers its signed events to `python -m webhooks serve`, over the
Cosmos DB stand-in and the Service Bus emulator, for transactions ingest read from the OpenTickets
sandbox (`python -m ingest sync --once`). The Stripe clock moves (refunds, disputes, payouts happen);
the OpenTickets side is not read again, so only the webhooks can bring the transactions up to date.
The second test runs `python -m enricher serve` too: payout events reach the deposit fields through it.
The third moves both sandboxes a few hours first, so that some separate transfers are made only after
their payments were enriched: their `transfer.created` reaches the routing fields through the enricher.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from system_processes import OPENTICKETS_SANDBOX_CLIENT, run, serve, service_env, stop
from test_enricher_system import System, expected_enrichment, wrong_fields

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import run_sandbox
from devstack.scenario import Route
from devstack.scenario.stripe_world import LATE_TRANSFER_SECONDS
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from devstack.testing import fresh_database
from otcommon.messages import decode_service_bus_message
from otcommon.payment_transactions import (
    PAYMENT_TRANSACTIONS_CONTAINER,
    listed_transactions,
    payment_transactions_key,
    payment_transactions_partition,
    ref_of,
)
from otcommon.served import served_is_disputed, served_is_refunded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from azure.cosmos.aio import CosmosClient

    from devstack.scenario import StripeWorld
    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO = {"seed": 11, "orders": 300, "events": 3, "organizers": 3}
PLATFORM_SECRET = "whsec_e2e_platform"
CONNECT_SECRET = "whsec_e2e_connect"
PAYOUT_QUEUE = "stripe-events-queue"
PAYMENT_EVENTS = ("refund.", "charge.refund", "charge.dispute.")
ENRICHER_EVENTS = ("payout.", "transfer.created")


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
            records = {row["id"]: row for row in await environment.rows("webhook-journal")}
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

    # Payouts and transfers are the enricher's to apply: each such event is handed over on its queue, once.
    payout_events = {i for i, event in log.items() if event["type"].startswith(ENRICHER_EVENTS)}
    assert {log[i]["type"] for i in payout_events} >= {"payout.paid", "transfer.created"}
    assert {records[i]["state"] for i in payout_events} == {"applied"}
    handed_over = await payout_messages(environment.servicebus, len(payout_events))
    assert sorted(message.stripe_event_id for message in handed_over) == sorted(payout_events)


# With the enricher: the deposit fields (the enricher's, moved by the payout events the webhook
# service hands over) and the refund and dispute fields (the webhook service's) of every transaction
# end equal to the generator's truth, the events arriving while the enricher is still enriching.


def expected_stripe_facts(
    world: StripeWorld, charge_id: str, *, total: float, delivered: set[str]
) -> dict[str, Any]:
    """The webhook service's summary fields that the delivered refunds and disputes of a charge give.

    Refunds and disputes made before the sandbox started sent no event (the source's flags tell those).
    """
    expected: dict[str, Any] = {}
    refunds = [r for r in world.refunds.values() if r["charge"] == charge_id and r["id"] in delivered]
    if refunds:
        refunded = sum(refund["amount"] for refund in refunds if refund["status"] == "succeeded")
        expected["stripeRefundedAmount"] = refunded / 100  # the sandbox's world is in usd
        expected["stripeRefundStatus"] = "full" if refunded / 100 >= total else "partial"
    disputes = [d for d in world.disputes.values() if d["charge"] == charge_id and d["id"] in delivered]
    if disputes:
        [dispute] = disputes  # the generator disputes a charge once
        expected["stripeDisputeStatus"] = dispute["status"]
        expected["stripeDisputeReason"] = dispute["reason"]
    return expected


STRIPE_SUMMARY_FIELDS = (
    "stripeRefundedAmount",
    "stripeRefundStatus",
    "stripeDisputeStatus",
    "stripeDisputeReason",
)


def wrong_stripe_facts(
    stored: list[dict[str, Any]], world: StripeWorld, log: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per card transaction, each refund or dispute field that differs from the truth: (stored, expected)."""
    delivered = {event["data"]["object"]["id"] for event in log.values()}
    wrong: dict[str, dict[str, Any]] = {}
    for row in stored:
        if not row["PaymentID"]:
            continue
        charge_id = world.payments[row["PaymentID"]].charge_id
        expected = expected_stripe_facts(world, charge_id, total=row["TotalAmount"], delivered=delivered)
        differing = {
            name: (row.get(name), expected.get(name))
            for name in STRIPE_SUMMARY_FIELDS
            if row.get(name) != expected.get(name)
        }
        if differing:
            wrong[row["id"]] = differing
    return wrong


DEPOSIT_FIELDS = ("stripePayoutId", "stripePayoutStatus", "depositStatus", "depositDate")


def deposit_of(world: StripeWorld, row: dict[str, Any]) -> tuple[Any, ...]:
    """The deposit fields the generator's world gives an order's payment."""
    expected = expected_enrichment(world, world.payments[row["PaymentID"]])
    return tuple(expected[name] for name in DEPOSIT_FIELDS)


def enricher_system(
    environment: Environment,
    cosmos_client: CosmosClient,
    stripe: StripeSandboxHandle,
    stripe_settings: StripeSandboxSettings,
    tmp_path: Path,
) -> System:
    """The enricher's system-test harness, its environment pointed at the running Stripe sandbox."""
    environment.env.update(
        OT_STRIPE_API_KEY=stripe_settings.secret_key,
        OT_STRIPE_API_BASE=stripe.base_url,
        OT_STRIPE_REQUESTS_PER_SECOND="1000",
        OT_ENRICHER_HTTP_HOST="127.0.0.1",
    )
    return System(
        environment.env, environment.env["OT_COSMOS_DATABASE"], cosmos_client,
        environment.servicebus, stripe, tmp_path,
    )  # fmt: skip


async def peek_count(connection_string: str, queue: str) -> int:
    """Messages waiting on a queue (peeked, left there)."""
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        receiver = client.get_queue_receiver(queue)
        async with receiver:
            return len(await receiver.peek_messages(max_message_count=1_000))


async def at_the_truth(
    system: System, world: StripeWorld, log: dict[str, dict[str, Any]], *, enriched: int
) -> bool:
    """Every payment enriched, both queues of the enricher empty, every field at the truth."""
    stored = await system.stored()
    return (
        await system.count("enriched") == enriched
        and not await peek_count(system.servicebus, PAYOUT_QUEUE)
        and not await system.queued_payments()
        and wrong_fields(stored, world) == {}
        and wrong_stripe_facts(stored, world, log) == {}
    )


async def _enriched(system: System, payments: int) -> bool:
    return await system.count("enriched") == payments


async def ingest_orders(environment: Environment) -> dict[str, dict[str, Any]]:
    """The OpenTickets sandbox's orders, stored by ``python -m ingest sync --once`` (payments queued)."""
    async with run_sandbox(settings=SandboxSettings(**SCENARIO)) as opentickets:
        environment.env["OT_OPENTICKETS_BASE_URL"] = opentickets.base_url
        code, err = await environment.run("-m", "ingest", "sync", "--once")
        assert code == 0, err
    return {row["id"]: row for row in await environment.rows("transactions")}


async def half_days_of_events(stripe: StripeSandboxHandle, half_days: int) -> dict[str, dict[str, Any]]:
    """Move the Stripe clock (refunds, disputes, payouts happen); every event so far delivered."""
    for _ in range(half_days):
        stripe.state.advance(minutes=720, refunds=5, disputes=3)
        await stripe.state.webhooks.drain()
    log = stripe.state.events.events
    assert stripe.state.webhooks.outcomes == {"delivered": len(log)}  # every delivery got a 2xx
    return log


@pytest.mark.timeout(600)
async def test_with_the_enricher_running_every_transaction_ends_at_the_generators_truth(
    environment, cosmos_client, tmp_path
):
    ingested = await ingest_orders(environment)
    card = {i for i, row in ingested.items() if row["PaymentID"]}
    paid = {ingested[i]["PaymentID"] for i in card}

    webhooks, url = await serve_webhooks(environment.env)
    stripe_settings = StripeSandboxSettings(
        **SCENARIO, webhook_url=url, webhook_secret=PLATFORM_SECRET, connect_webhook_url=url,
        connect_webhook_secret=CONNECT_SECRET, rate_limit_per_second=10_000,
    )  # fmt: skip
    try:
        async with run_stripe_sandbox(settings=stripe_settings) as stripe:
            system = enricher_system(environment, cosmos_client, stripe, stripe_settings, tmp_path)
            enricher = await system.start_enricher("serve")
            try:
                # Half a day passes while the payments ingest queued are being enriched (their orders are
                # not listed yet: the webhook service finds them by the query), then a day and a half
                # once all are enriched: only the payout events handed to the enricher move deposits.
                await half_days_of_events(stripe, 1)
                await system.wait_until(lambda: _enriched(system, len(card)), enricher=enricher, name="serve")
                world_once_enriched = stripe.world
                log = await half_days_of_events(stripe, 3)
                world, truth_rows = stripe.world, stripe.state.scenario.transactions()
                payment_of_charge = {facts.charge_id: p for p, facts in world.payments.items()}
                waiting = {i for i, e in log.items() if waiting_for_a_payment(e, paid, payment_of_charge)}
                records = await settled(environment, waiting)
                # Gives up after a while (pytest.fail); the assertions below then say what differs.
                with contextlib.suppress(pytest.fail.Exception):
                    await system.wait_until(
                        lambda: at_the_truth(system, world, log, enriched=len(card)),
                        enricher=enricher,
                        name="serve",
                    )
            finally:
                await system.stop_enricher(enricher, "serve")
    finally:
        await stop(webhooks)

    stored = await system.stored()
    by_id = {row["id"]: row for row in stored}
    assert set(by_id) == set(ingested)
    assert wrong_fields(stored, world) == {}  # deposit and routing fields: the enricher's
    assert wrong_stripe_facts(stored, world, log) == {}  # refund and dispute fields: the webhook service's
    assert await system.count("enriched") == len(card)
    assert await peek_count(environment.servicebus, PAYOUT_QUEUE) == 0
    # The truth moved: payouts paid and refunds and disputes made after ingest read the orders.
    moved = [
        i for i in card if deposit_of(world, ingested[i]) != deposit_of(world_once_enriched, ingested[i])
    ]
    assert moved, "some payout should have moved after every payment was enriched"
    assert any(row.get("stripeRefundStatus") in {"partial", "full"} for row in stored)
    assert any(row.get("stripeDisputeStatus") for row in stored)
    acted_on = {
        i for i in set(log) - waiting if log[i]["type"].startswith((*PAYMENT_EVENTS, *ENRICHER_EVENTS))
    }
    assert acted_on
    assert {records[i]["state"] for i in acted_on} == {"applied"}
    assert {records[i]["state"] for i in set(log) - waiting - acted_on} <= {"ignored"}  # charge.succeeded...
    truth = {row["id"]: row for row in truth_rows}
    assert {i for i in card if served_is_refunded(by_id[i])} == {i for i in card if truth[i]["IsRefunded"]}
    assert {i for i in card if served_is_disputed(by_id[i])} == {i for i in card if truth[i]["IsDisputed"]}
    # The webhook service found these orders by point reads: the enricher listed each one.
    assert await unlisted_orders(environment, world, [ingested[i] for i in card]) == []


async def unlisted_orders(
    environment: Environment, world: StripeWorld, orders: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """(order, Stripe id) of each order its payment's ``transactions-of:`` documents do not list."""
    index = environment.database.get_container_client(PAYMENT_TRANSACTIONS_CONTAINER)
    missing = []
    for order in orders:
        facts = world.payments[order["PaymentID"]]
        for stripe_id in filter(None, (facts.payment_id, facts.charge_id, facts.payment_intent_id)):
            key = payment_transactions_key(stripe_id)
            stored = await index.read_item(key, partition_key=payment_transactions_partition(key))
            if ref_of(order) not in listed_transactions(stored):
                missing.append((order["id"], stripe_id))
    return missing


# A separate transfer made after its payment was enriched: Stripe's transfer.created, delivered to the
# webhook service and handed to the enricher, re-routes the payment to the organizer.
LATE_SCENARIO = {**SCENARIO, "sales_per_hour": 20}
SALES_HOURS = 4


async def route_types(system: System, payment_ids: set[str]) -> dict[str, Any]:
    return {
        row["PaymentID"]: row.get("stripeRouteType")
        for row in await system.stored()
        if row["PaymentID"] in payment_ids
    }


@pytest.mark.timeout(600)
async def test_a_transfer_made_after_the_payment_was_enriched_reroutes_it_through_the_webhooks(
    environment, cosmos_client, tmp_path
):
    # Both sandboxes move on a few hours: the latest sales' late separate transfers are not made yet.
    async with run_sandbox(settings=SandboxSettings(**LATE_SCENARIO)) as opentickets:
        opentickets.advance(minutes=SALES_HOURS * 60)
        environment.env["OT_OPENTICKETS_BASE_URL"] = opentickets.base_url
        code, err = await environment.run("-m", "ingest", "sync", "--once")
        assert code == 0, err
    card = {row["PaymentID"] for row in await environment.rows("transactions") if row["PaymentID"]}

    webhooks, url = await serve_webhooks(environment.env)
    stripe_settings = StripeSandboxSettings(
        **LATE_SCENARIO, webhook_url=url, webhook_secret=PLATFORM_SECRET, connect_webhook_url=url,
        connect_webhook_secret=CONNECT_SECRET, rate_limit_per_second=10_000,
    )  # fmt: skip
    try:
        async with run_stripe_sandbox(settings=stripe_settings) as stripe:
            stripe.state.advance(minutes=SALES_HOURS * 60)
            await stripe.state.webhooks.drain()
            late = {
                order.payment_id
                for order in stripe.state.scenario.orders()
                if order.route is Route.SEPARATE_TRANSFER
                and stripe.world.payments[order.payment_id].route is Route.PLATFORM
            }
            assert late, "some separate transfer should not be made yet"
            assert late <= card
            system = enricher_system(environment, cosmos_client, stripe, stripe_settings, tmp_path)
            enricher = await system.start_enricher("serve")
            try:
                await system.wait_until(lambda: _enriched(system, len(card)), enricher=enricher, name="serve")
                assert set((await route_types(system, late)).values()) == {"platform"}

                stripe.state.advance(minutes=LATE_TRANSFER_SECONDS / 60)  # the late transfers are made
                await stripe.state.webhooks.drain()
                world = stripe.world
                assert {world.payments[p].route for p in late} == {Route.SEPARATE_TRANSFER}
                with contextlib.suppress(pytest.fail.Exception):  # the assertions below say what differs
                    await system.wait_until(
                        lambda: rerouted(system, world, late), enricher=enricher, name="serve"
                    )
            finally:
                await system.stop_enricher(enricher, "serve")
    finally:
        await stop(webhooks)

    assert set((await route_types(system, late)).values()) == {"connected"}
    assert wrong_fields(await system.stored(), world) == {}
    assert await peek_count(environment.servicebus, PAYOUT_QUEUE) == 0


async def rerouted(system: System, world: StripeWorld, late: set[str]) -> bool:
    """The late payments routed to their organizers, every field at the truth, the enricher's queue empty.

    The webhook service hands events on after it answers Stripe, so the queue can still fill once the
    routes are right: the test waits for the enricher to have taken every message."""
    return (
        set((await route_types(system, late)).values()) == {"connected"}
        and wrong_fields(await system.stored(), world) == {}
        and not await peek_count(system.servicebus, PAYOUT_QUEUE)
    )
