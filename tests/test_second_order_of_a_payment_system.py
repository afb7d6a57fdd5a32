"""A second order paid by a payment the enricher has already enriched reaches the enricher too.

One Stripe payment may pay several orders (a checkout covering more than one event of a tour), and
the second may be listed by the OpenTickets API after the first was synced and enriched. The
enrichment queue drops a message whose id it has seen within its duplicate detection window (one
day in the project's topology), so a request keyed on the PaymentID alone was dropped and left the
second order `queued` with no message to move it. Run through the real entry points
(`python -m ingest sync --once`, `python -m enricher serve`) against the Cosmos DB stand-in, the
Service Bus emulator, the OpenTickets sandbox and the Stripe sandbox (the same seeded world).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from azure.servicebus.aio import ServiceBusClient
from system_processes import OPENTICKETS_SANDBOX_CLIENT, run, serve, service_env, stop

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import run_sandbox
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from devstack.testing import fresh_database
from otcommon.messages import decode_service_bus_message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from devstack.opentickets.testing import SandboxHandle

# Ingest runs twice and the enricher is started twice beside four stand-ins.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

QUEUE = "stripe-enrichment-queue"
SEED, EVENTS, ORDERS = 5, 3, 40
WAIT_SECONDS = 120
ENRICHMENT_FIELDS = (
    "stripeRouteType", "stripeChargeId", "stripePaymentIntentId", "stripeBalanceTransactionId",
    "stripePayoutId", "depositStatus", "depositDate",
)  # fmt: skip


class Stack:
    """The services' environment and what a test reads back: stored transactions, the queue."""

    def __init__(self, env: dict[str, str], *, container: Any, servicebus: str, logs: Path) -> None:
        self.env = env
        self._container = container
        self._servicebus = servicebus
        self._logs = logs

    async def stored(self) -> dict[str, dict[str, Any]]:
        return {row["id"]: row async for row in self._container.query_items("SELECT * FROM c")}

    async def sync(self) -> dict[str, Any]:
        finished = await run("ingest", "sync", "--once", env=self.env, timeout=WAIT_SECONDS)
        assert finished.code == 0, finished.err
        return dict(json.loads(finished.out))

    async def queued_payments(self) -> list[str]:
        """The PaymentIDs of the requests waiting on the queue (peeked, left there)."""
        async with ServiceBusClient.from_connection_string(self._servicebus) as client:
            receiver = client.get_queue_receiver(QUEUE)
            async with receiver:
                peeked = await receiver.peek_messages(max_message_count=1_000)
        return [decode_service_bus_message(m).message.payment_id for m in peeked]  # type: ignore[attr-defined]

    async def enrich_everything_queued(self, name: str) -> None:
        """Run `enricher serve` until no request is left and nothing stored is `queued`, then stop it."""
        log = self._logs / f"{name}.log"
        process, _ = await serve("enricher", env=self.env, port_setting="OT_ENRICHER_HTTP_PORT", log=log)
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while await self.queued_payments() or await self._any_queued():
                    assert process.returncode is None, log.read_text()[-5_000:]
                    await asyncio.sleep(0.2)  # polling another process's progress
        finally:
            assert await stop(process) == 0, log.read_text()[-5_000:]

    async def _any_queued(self) -> bool:
        return any(doc.get("enrichmentState") == "queued" for doc in (await self.stored()).values())


@pytest.fixture
async def stack(cosmos_client, cosmos_connection, start_servicebus, tmp_path) -> AsyncIterator[Stack]:
    stripe_settings = StripeSandboxSettings(
        seed=SEED, orders=ORDERS, events=EVENTS, rate_limit_per_second=10_000
    )
    async with fresh_database(cosmos_client, "second-order") as database:
        with start_servicebus() as servicebus:
            async with run_stripe_sandbox(settings=stripe_settings) as stripe:
                env = service_env(
                    cosmos_connection, database, servicebus=servicebus.connection_string,
                    **OPENTICKETS_SANDBOX_CLIENT, OT_STRIPE_API_KEY=stripe_settings.secret_key,
                    OT_STRIPE_API_BASE=stripe.base_url, OT_STRIPE_REQUESTS_PER_SECOND="1000",
                    OT_ENRICHER_HTTP_HOST="127.0.0.1", OTEL_SERVICE_NAME="enricher",
                )  # fmt: skip
                container = cosmos_client.get_database_client(database).get_container_client("transactions")
                yield Stack(env, container=container, servicebus=servicebus.connection_string, logs=tmp_path)


@pytest.fixture
async def opentickets(stack: Stack) -> AsyncIterator[SandboxHandle]:
    # In this process, so the test can list a new order of an existing payment between two syncs.
    async with run_sandbox(settings=SandboxSettings(seed=SEED, orders=ORDERS, events=EVENTS)) as sandbox:
        stack.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        yield sandbox


async def test_an_order_listed_after_its_payment_was_enriched_is_queued_and_enriched(
    stack: Stack, opentickets: SandboxHandle
):
    first_sync = await stack.sync()
    assert first_sync["created"] == ORDERS
    await stack.enrich_everything_queued("first")
    first_orders = await stack.stored()
    paid = next(doc for doc in first_orders.values() if doc["PaymentID"])
    assert paid["enrichmentState"] == "enriched"

    second_order_id = opentickets.add_order_paid_by(paid["id"]).new_ids[0]
    second_sync = await stack.sync()
    assert (second_sync["created"], second_sync["queued"]) == (1, 1)
    stored = await stack.stored()
    assert (stored[second_order_id]["PaymentID"], stored[second_order_id]["enrichmentState"]) == (
        paid["PaymentID"],
        "queued",
    )
    # The request must be on the queue: nothing else would ever move the order out of `queued`.
    assert await stack.queued_payments() == [paid["PaymentID"]]

    await stack.enrich_everything_queued("second")
    second = (await stack.stored())[second_order_id]
    assert second["enrichmentState"] == "enriched"
    assert {name: second.get(name) for name in ENRICHMENT_FIELDS} == {
        name: paid.get(name) for name in ENRICHMENT_FIELDS
    }
