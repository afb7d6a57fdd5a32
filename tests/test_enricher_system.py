"""System tests of the enricher through its real entry point (`python -m enricher serve`), after
`python -m ingest sync --once`, against the Cosmos DB stand-in, the Service Bus emulator, the
OpenTickets sandbox and the Stripe sandbox (the same seeded world on both), all over the network.

"Enriched once", as these tests observe it:
- every transaction with a PaymentID ends `enriched`, its fields equal to the Stripe sandbox's
  ground truth; a box-office row (no PaymentID) is never queued and gets no enrichment field;
- a transaction enriched before a crash is not written again after the restart (its `_etag` and
  `enrichedAt` are unchanged): a redelivered message finds every field equal and writes nothing;
- each transaction is announced on `transaction-changes` under one message id only, the one of
  the stored `enrichedAt` (a re-announcement after a redelivery repeats that id, which duplicate
  detection or an idempotent reader drops);
- the dead-letter queue is empty.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from system_processes import (
    OPENTICKETS_SANDBOX_CLIENT,
    kill,
    run,
    serve,
    service_env,
    stop,
)

from devstack.opentickets.testing import run_sandbox_process
from devstack.paths import project_topology
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import StripeSandboxHandle, run_stripe_sandbox
from devstack.testing import fresh_database
from otcommon.messages import (
    PaymentEnrichmentRequested,
    TransactionChanged,
    decode_service_bus_message,
    envelope_to_service_bus_message,
    make_envelope,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from devstack.scenario import PaymentFacts, StripeWorld

# Each test runs ingest and the enricher as processes (one of them killed and restarted) beside four
# stand-ins; the suite-wide 60 s bound is too tight for that on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

QUEUE = "stripe-enrichment-queue"
TOPIC, AUDIT = "transaction-changes", "audit"
# The defaults of both sandboxes; 300 orders hold every route, legacy ch_ ids on each, manual
# payouts, a failed payout and funds not paid out yet (asserted below, so a new generator that
# loses one fails here).
SEED, EVENTS, ORDERS = 7, 6, 300
LOCK_SECONDS = 5
WAIT_SECONDS = 150


def short_lock_topology(folder: Path) -> Path:
    """The project's topology with a short lock on the queue: a killed consumer's messages return soon."""
    config = json.loads(project_topology().read_text())
    for namespace in config["UserConfig"]["Namespaces"]:
        for queue in namespace["Queues"]:
            if queue["Name"] == QUEUE:
                queue["Properties"]["LockDuration"] = f"PT{LOCK_SECONDS}S"
    path = folder / "Config.json"
    path.write_text(json.dumps(config))
    return path


@dataclass
class System:
    env: dict[str, str]
    database: str
    cosmos_client: Any
    servicebus: str
    stripe: StripeSandboxHandle
    logs: Path

    def transactions(self) -> Any:
        return self.cosmos_client.get_database_client(self.database).get_container_client("transactions")

    async def stored(self) -> list[dict[str, Any]]:
        return [row async for row in self.transactions().query_items("SELECT * FROM c")]

    async def count(self, state: str) -> int:
        query = "SELECT VALUE COUNT(1) FROM c WHERE c.enrichmentState = @state"
        parameters = [{"name": "@state", "value": state}]
        return sum([n async for n in self.transactions().query_items(query, parameters=parameters)])

    async def ingest_sync(self) -> dict[str, Any]:
        finished = await run("ingest", "sync", "--once", env=self.env, timeout=WAIT_SECONDS)
        assert finished.code == 0, finished.err
        return dict(json.loads(finished.out))

    async def start_enricher(self, name: str, **extra_env: str) -> asyncio.subprocess.Process:
        """`python -m enricher serve`, once it answers /readyz (its stderr goes to logs/NAME.log)."""
        env = {**self.env, **extra_env}
        log = self.logs / f"{name}.log"
        process, _ = await serve("enricher", env=env, port_setting="OT_ENRICHER_HTTP_PORT", log=log)
        return process

    async def stop_enricher(self, process: asyncio.subprocess.Process, name: str) -> None:
        assert await stop(process) == 0, self.log(name)
        leaks = [
            line for line in self.log(name).splitlines() if "ResourceWarning" in line or "Unclosed" in line
        ]
        assert leaks == []

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    async def wait_until(
        self, condition: Callable[[], Awaitable[bool]], *, enricher: asyncio.subprocess.Process, name: str
    ) -> None:
        """Poll until ``condition`` holds; fail at once if the enricher exits meanwhile."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while not await condition():
                    assert enricher.returncode is None, self.log(name)[-5_000:]
                    await asyncio.sleep(0.1)
        except TimeoutError:
            states = Counter(doc.get("enrichmentState") for doc in await self.stored())
            pytest.fail(f"still waiting after {WAIT_SECONDS} s; states {dict(states)}; see {self.logs}")

    async def settled(self, payments: int) -> bool:
        """Every payment enriched and nothing left on the queue."""
        return await self.count("enriched") == payments and not await self.queued_payments()

    async def queued_payments(self) -> list[str]:
        """The PaymentIDs waiting on the queue (peeked, left there)."""
        async with ServiceBusClient.from_connection_string(self.servicebus) as client:
            receiver = client.get_queue_receiver(QUEUE)
            async with receiver:
                peeked = await receiver.peek_messages(max_message_count=5_000)
        return [decode_service_bus_message(m).message.payment_id for m in peeked]  # type: ignore[attr-defined]

    async def dead_letters(self) -> list[tuple[str | None, str | None]]:
        async with ServiceBusClient.from_connection_string(self.servicebus) as client:
            receiver = client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            async with receiver:
                peeked = await receiver.peek_messages(max_message_count=100)
        return [(m.dead_letter_reason, m.dead_letter_error_description) for m in peeked]

    async def announcements(self) -> dict[str, set[tuple[str, str]]]:
        """(message id, changedAt) of every TransactionChanged by transaction id (received and deleted)."""
        found: dict[str, set[tuple[str, str]]] = defaultdict(set)
        async with ServiceBusClient.from_connection_string(self.servicebus) as client:
            receiver = client.get_subscription_receiver(
                TOPIC, AUDIT, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            )
            async with receiver, asyncio.timeout(WAIT_SECONDS):
                while batch := await receiver.receive_messages(max_message_count=200, max_wait_time=2):
                    for raw in batch:
                        envelope = decode_service_bus_message(raw)
                        change = envelope.message
                        assert isinstance(change, TransactionChanged)
                        found[change.transaction_id].add((envelope.message_id, change.changed_at.isoformat()))
        return found

    async def send(self, *messages: PaymentEnrichmentRequested) -> None:
        """Queue the messages, each under a random message id (so duplicate detection keeps them all)."""
        envelopes = [make_envelope(m, message_id=str(uuid.uuid4())) for m in messages]
        async with ServiceBusClient.from_connection_string(self.servicebus) as client:
            sender = client.get_queue_sender(QUEUE)
            async with sender:
                await sender.send_messages([envelope_to_service_bus_message(e) for e in envelopes])


@pytest.fixture
async def system(cosmos_client, cosmos_connection, start_servicebus, tmp_path) -> AsyncIterator[System]:
    stripe_settings = StripeSandboxSettings(
        seed=SEED, orders=ORDERS, events=EVENTS, rate_limit_per_second=10_000
    )
    sandbox_args = ["--seed", str(SEED), "--orders", str(ORDERS), "--events", str(EVENTS)]
    async with fresh_database(cosmos_client, "enricher") as database:
        with start_servicebus(config=short_lock_topology(tmp_path)) as servicebus:
            async with (
                run_sandbox_process(args=sandbox_args) as opentickets,
                run_stripe_sandbox(settings=stripe_settings) as stripe,
            ):
                env = service_env(
                    cosmos_connection, database, servicebus=servicebus.connection_string,
                    OT_OPENTICKETS_BASE_URL=opentickets.base_url, **OPENTICKETS_SANDBOX_CLIENT,
                    OT_STRIPE_API_KEY=stripe_settings.secret_key, OT_STRIPE_API_BASE=stripe.base_url,
                    OT_STRIPE_REQUESTS_PER_SECOND="1000", OT_ENRICHER_HTTP_HOST="127.0.0.1",
                    OTEL_SERVICE_NAME="enricher",
                    # An unclosed session, transport or socket is reported, and a clean stop has none.
                    PYTHONWARNINGS="always::ResourceWarning",
                )  # fmt: skip
                yield System(env, database, cosmos_client, servicebus.connection_string, stripe, tmp_path)


def _major(amount: int | None) -> float | None:
    return None if amount is None else amount / 100  # the sandbox's world is in usd


def _date(unix_seconds: int | None) -> str | None:
    return None if unix_seconds is None else datetime.fromtimestamp(unix_seconds, UTC).date().isoformat()


def expected_enrichment(world: StripeWorld, facts: PaymentFacts) -> dict[str, Any]:
    """The enrichment fields SPEC sections 2 and 5 give this payment, from the generator's ground truth."""
    connected = str(facts.route) != "platform"
    destination = (facts.destination_account_id or facts.account_id) if connected else None
    # The organizer's money: the transfer's payment on the connected account, else the charge itself.
    if facts.destination_payment_id is not None:
        money_id = world.charges[facts.destination_payment_id]["balance_transaction"]
    else:
        money_id = facts.balance_transaction_id
    money = world.balance_transactions[money_id]
    bank = world.bank_accounts[facts.deposit_bank_account_id] if facts.deposit_bank_account_id else None
    return {
        "enrichmentState": "enriched",
        "enrichmentReason": None,
        "stripeRouteType": "connected" if connected else "platform",
        "stripePlatformAccountId": world.platform_account_id,
        "stripePlatformAccountName": world.account_name(world.platform_account_id),
        "stripeDestinationAccountId": destination,
        "stripeDestinationAccountName": world.account_name(destination) if destination else None,
        "stripeChargeId": facts.charge_id,
        "stripePaymentIntentId": facts.payment_intent_id,
        "stripeBalanceTransactionId": money_id,
        "stripeTransferId": facts.transfer_id,
        "stripeApplicationFeeAmount": _major(facts.application_fee_amount),
        "stripeNetAmount": _major(facts.net_amount),
        "stripeCurrency": money["currency"],
        "stripeAvailableOn": _date(money["available_on"]),
        "stripePayoutId": facts.payout_id,
        "stripePayoutStatus": facts.payout_status,
        "depositStatus": facts.deposit_status,
        "depositDate": _date(facts.payout_arrival_date),
        "depositBankName": bank["bank_name"] if bank else None,
        "depositBankLast4": bank["last4"] if bank else None,
    }


def wrong_fields(stored: list[dict[str, Any]], world: StripeWorld) -> dict[str, list[str]]:
    """Per transaction id, every enrichment field that differs from the ground truth."""
    wrong: dict[str, list[str]] = {}
    for document in stored:
        if not document["PaymentID"]:
            continue
        expected = expected_enrichment(world, world.payments[document["PaymentID"]])
        if differing := [name for name, value in expected.items() if document.get(name) != value]:
            wrong[document["id"]] = differing
    return wrong


def coverage(world: StripeWorld) -> Counter[str]:
    """How many payments of each kind the world holds: route and id kind, deposit status."""
    kinds: Counter[str] = Counter()
    for facts in world.payments.values():
        id_kind = facts.payment_id[:3]
        if id_kind == "ch_":  # a charge id: with its PaymentIntent, or a legacy charge without one
            id_kind += "+pi" if facts.payment_intent_id else " legacy"
        kinds[f"{facts.route}/{id_kind}"] += 1
        kinds[f"deposit {facts.deposit_status}"] += 1
    return kinds


async def test_payments_ingest_queued_are_enriched_to_the_stripe_ground_truth(system: System):
    world = system.stripe.world
    kinds = coverage(world)
    routes = ("platform", "direct", "destination", "separate_transfer")
    every_kind = {f"{route}/{kind}" for route in routes for kind in ("pi_", "ch_+pi", "ch_ legacy")}
    every_kind |= {f"deposit {status}" for status in ("paid", "pending", "failed", "not_traceable")}
    assert every_kind <= set(kinds), kinds

    progress = await system.ingest_sync()
    assert progress["created"] == ORDERS
    stored = await system.stored()
    box_office = [doc for doc in stored if not doc["PaymentID"]]
    assert box_office, "the world should hold box-office rows without a PaymentID"
    queued = await system.queued_payments()
    assert sorted(queued) == sorted(doc["PaymentID"] for doc in stored if doc["PaymentID"])
    assert set(queued) == set(world.payments)

    enricher = await system.start_enricher("serve")
    try:
        payments = len(stored) - len(box_office)
        await system.wait_until(
            lambda: _equals(system.count("enriched"), payments), enricher=enricher, name="serve"
        )
    finally:
        await system.stop_enricher(enricher, "serve")

    stored = await system.stored()
    assert wrong_fields(stored, world) == {}
    for document in stored:
        if not document["PaymentID"]:
            assert document.get("enrichmentState") is None
            assert not [name for name in document if name.startswith(("stripe", "deposit"))], document["id"]
    announced = await system.announcements()
    assert set(announced) == {doc["id"] for doc in stored if doc["PaymentID"]}
    assert await system.dead_letters() == []


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_sigkill_mid_batch_then_restart_enriches_every_payment_once(system: System):
    world = system.stripe.world
    await system.ingest_sync()
    requests = {doc["PaymentID"]: doc for doc in await system.stored() if doc["PaymentID"]}
    # Few messages at a time and a slow Stripe, so the kill lands with part of the batch written.
    system.stripe.state.faults.update(latency_ms=20)
    first = await system.start_enricher("first", OT_ENRICHER_MAX_CONCURRENCY="2")
    try:
        await system.wait_until(lambda: _at_least(system.count("enriched"), 20), enricher=first, name="first")
    finally:
        await kill(first)
    before = {doc["id"]: doc for doc in await system.stored() if doc.get("enrichmentState") == "enriched"}
    assert 20 <= len(before) < len(requests), "the kill should land mid-batch"
    # The same requests delivered again (new message ids, so duplicate detection lets them through).
    again = [requests[doc["PaymentID"]] for doc in list(before.values())[:10]]
    await system.send(*(request_for(doc) for doc in again))

    system.stripe.state.faults.update(latency_ms=0)
    second = await system.start_enricher("second")
    try:
        await system.wait_until(lambda: system.settled(len(requests)), enricher=second, name="second")
    finally:
        await system.stop_enricher(second, "second")

    stored = await system.stored()
    assert wrong_fields(stored, world) == {}
    after = {doc["id"]: doc for doc in stored}
    rewritten = [
        tid for tid, doc in before.items()
        if (after[tid]["_etag"], after[tid]["enrichedAt"]) != (doc["_etag"], doc["enrichedAt"])
    ]  # fmt: skip
    assert rewritten == []
    announced = await system.announcements()
    enriched = {tid: doc for tid, doc in after.items() if doc["PaymentID"]}
    assert set(announced) == set(enriched)
    several = {tid: ids for tid, ids in announced.items() if len(ids) != 1}
    assert several == {}
    stamps = {tid: datetime.fromisoformat(next(iter(ids))[1]) for tid, ids in announced.items()}
    assert {tid: datetime.fromisoformat(doc["enrichedAt"]) for tid, doc in enriched.items()} == stamps
    assert await system.queued_payments() == []
    assert await system.dead_letters() == []


def request_for(document: dict[str, Any]) -> PaymentEnrichmentRequested:
    """A new enrichment request for a stored transaction, as ingest's requeue would send."""
    return PaymentEnrichmentRequested(
        payment_id=document["PaymentID"],
        transaction_id=document["id"],
        event_id=document["eventId"],
        requested_at=datetime.now(UTC),
    )


async def _at_least(count: Awaitable[int], expected: int) -> bool:
    return await count >= expected


async def test_an_unknown_payment_is_unresolved_and_a_revoked_key_dead_letters_with_an_alert(system: System):
    unknown, refused = "pi_1UnknownToEveryAccount", "pi_1AskedOnceTheKeyWasRevoked"
    for transaction_id, payment in (("tx-unknown", unknown), ("tx-refused", refused)):
        document = {"id": transaction_id, "eventId": "ev-faults", "PaymentID": payment}
        await system.transactions().create_item({**document, "enrichmentState": "queued"})
    enricher = await system.start_enricher("faults")
    try:
        await system.send(request_for({"id": "tx-unknown", "eventId": "ev-faults", "PaymentID": unknown}))
        await system.wait_until(
            lambda: _equals(system.count("unresolved"), 1), enricher=enricher, name="faults"
        )
        # Requested after every listing: only Stripe can answer, and it refuses the revoked key.
        system.stripe.state.keys.revoke(system.env["OT_STRIPE_API_KEY"])
        await system.send(request_for({"id": "tx-refused", "eventId": "ev-faults", "PaymentID": refused}))
        await system.wait_until(lambda: _has_dead_letters(system), enricher=enricher, name="faults")
    finally:
        await system.stop_enricher(enricher, "faults")

    resolved = await system.transactions().read_item("tx-unknown", partition_key="ev-faults")
    assert resolved["enrichmentState"] == "unresolved"
    assert "not found on the platform or any of" in resolved["enrichmentReason"]
    [(reason, description)] = await system.dead_letters()
    assert reason == "StripeAccessDenied"
    assert "AuthenticationError (status 401" in str(description)
    untouched = await system.transactions().read_item("tx-refused", partition_key="ev-faults")
    assert untouched["enrichmentState"] == "queued"
    logged = [json.loads(line) for line in system.log("faults").splitlines() if line.startswith("{")]
    alerts = [line for line in logged if line.get("alert")]
    assert [(line["message"], line["reason"]) for line in alerts] == [
        ("enrichment failed permanently", "StripeAccessDenied")
    ]
    assert await system.queued_payments() == []


async def _has_dead_letters(system: System) -> bool:
    return bool(await system.dead_letters())
