"""System test of the webhook service through its real entry point (`python -m webhooks serve`)
against the Cosmos DB stand-in and the Service Bus emulator: killed mid-delivery, then Stripe retries.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import stripe

from devstack.cosmos import connection_string as cosmos_connection_string
from devstack.servicebus.testing import free_port
from otcommon.store import DEFAULT_TOPOLOGY, provision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "whsec_system_test"


@pytest.fixture
async def environment(cosmos_client, cosmos_connection, start_servicebus) -> AsyncIterator[dict[str, str]]:
    database = f"webhooks-{uuid.uuid4().hex[:10]}"
    await provision(cosmos_client, database=database, topology=DEFAULT_TOPOLOGY)
    with start_servicebus() as servicebus:
        try:
            yield {
                **os.environ,
                "OT_COSMOS_CONNECTION_STRING": cosmos_connection_string(cosmos_connection.endpoint),
                "OT_COSMOS_DATABASE": database,
                "OT_SERVICEBUS_CONNECTION_STRING": servicebus.connection_string,
                "OT_WEBHOOKS_PLATFORM_SECRETS": SECRET,
                "OT_WEBHOOKS_SWEEP_SECONDS": "0.5",
                "OT_WEBHOOKS_SWEEP_AGE_SECONDS": "0.5",
                "OT_LOG_FORMAT": "json",
            }
        finally:
            await cosmos_client.delete_database(database)


async def serve(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhooks", "serve", env={**env, "OT_WEBHOOKS_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session, asyncio.timeout(90):
        while True:
            assert process.returncode is None, "webhooks exited before it was ready"
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return process, base
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.2)


def signed_refund(payment_id: str) -> tuple[str, str]:
    refund = {
        "id": "re_system1",
        "object": "refund",
        "amount": 1200,
        "currency": "usd",
        "status": "succeeded",
        "charge": None,
        "payment_intent": payment_id,
    }
    envelope = {"id": "evt_system1", "object": "event", "type": "refund.created", "created": 1_700_000_000}
    body = json.dumps({**envelope, "livemode": False, "data": {"object": refund}})
    header = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=int(time.time()))
    return body, header


async def post(base: str, body: str, header: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
        async with session.post(f"{base}/api/webhooks/stripe", data=body, headers=headers) as response:
            assert response.status == 200
            return await response.json()


async def test_killed_before_applying_then_retried_the_refund_lands_once(environment, cosmos_client):
    database = cosmos_client.get_database_client(environment["OT_COSMOS_DATABASE"])
    transactions = database.get_container_client("transactions")
    events = database.get_container_client("webhook-events")
    body, header = signed_refund("pi_system1")

    first, base = await serve(environment)
    assert (await post(base, body, header))["duplicate"] is False
    # Killed with the event recorded and not applied: its payment is not stored yet, so the first
    # attempt could not apply it (the sweep would retry it ten times before giving up).
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert (await events.read_item("evt_system1", partition_key="evt_system1"))["state"] == "received"
    await transactions.create_item(
        {
            "id": "tx-sys",
            "eventId": "ev-sys",
            "PaymentID": "pi_system1",
            "TotalAmount": 40.0,
            "IsRefunded": False,
        }
    )

    second, base = await serve(environment)
    try:
        assert (await post(base, body, header))["duplicate"] is True  # Stripe's retry
        async with asyncio.timeout(60):
            while (await events.read_item("evt_system1", partition_key="evt_system1"))["state"] == "received":
                await asyncio.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        await second.wait()
    record = await events.read_item("evt_system1", partition_key="evt_system1")
    stored = await transactions.read_item("tx-sys", partition_key="ev-sys")
    assert record["state"] == "applied"
    assert (stored["stripeRefundedAmount"], stored["stripeRefundStatus"]) == (12.0, "partial")
    assert list(stored["stripeRefunds"]) == ["re_system1"]
    assert stored["IsRefunded"] is False
