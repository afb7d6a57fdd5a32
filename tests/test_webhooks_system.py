"""System test of the webhook service through its real entry point (`python -m webhooks serve`)
against the Cosmos DB stand-in and the Service Bus emulator: killed mid-delivery, then Stripe retries.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import stripe
from system_processes import kill, serve, service_env, stop

from devstack.testing import fresh_database
from webhooks.journal import bucket_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "whsec_system_test"


@pytest.fixture
async def environment(cosmos_client, cosmos_connection, start_servicebus) -> AsyncIterator[dict[str, str]]:
    with start_servicebus() as servicebus:
        async with fresh_database(cosmos_client, "webhooks") as database:
            yield service_env(
                cosmos_connection, database, servicebus=servicebus.connection_string,
                OT_WEBHOOKS_PLATFORM_SECRETS=SECRET, OT_WEBHOOKS_SWEEP_SECONDS="0.5",
                OT_WEBHOOKS_SWEEP_AGE_SECONDS="0.5",
            )  # fmt: skip


async def serve_webhooks(
    env: dict[str, str], log: Path | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    return await serve("webhooks", env=env, port_setting="OT_WEBHOOKS_HTTP_PORT", log=log)


def signed_refund(payment_id: str, n: int = 1) -> tuple[str, str]:
    refund = {
        "id": f"re_system{n}",
        "object": "refund",
        "amount": 1200,
        "currency": "usd",
        "status": "succeeded",
        "charge": None,
        "payment_intent": payment_id,
    }
    envelope = {
        "id": f"evt_system{n}",
        "object": "event",
        "type": "refund.created",
        "created": 1_700_000_000 + n,
    }
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
    events = database.get_container_client("webhook-journal")
    body, header = signed_refund("pi_system1")

    first, base = await serve_webhooks(environment)
    assert (await post(base, body, header))["duplicate"] is False
    # Killed with the event recorded and not applied: its payment is not stored yet, so the first
    # attempt could not apply it (the sweep would retry it ten times before giving up).
    await kill(first)
    record_key = {"item": "evt_system1", "partition_key": bucket_of("evt_system1")}
    assert (await events.read_item(**record_key))["state"] == "received"
    await transactions.create_item(
        {
            "id": "tx-sys",
            "eventId": "ev-sys",
            "PaymentID": "pi_system1",
            "TotalAmount": 40.0,
            "IsRefunded": False,
        }
    )

    second, base = await serve_webhooks(environment)
    try:
        assert (await post(base, body, header))["duplicate"] is True  # Stripe's retry
        async with asyncio.timeout(60):
            while (await events.read_item(**record_key))["state"] == "received":
                await asyncio.sleep(0.2)
    finally:
        await stop(second)
    record = await events.read_item(**record_key)
    stored = await transactions.read_item("tx-sys", partition_key="ev-sys")
    assert record["state"] == "applied"
    assert (stored["stripeRefundedAmount"], stored["stripeRefundStatus"]) == (12.0, "partial")
    assert list(stored["stripeRefunds"]) == ["re_system1"]
    assert stored["IsRefunded"] is False


def server_processes(supervisor: asyncio.subprocess.Process) -> list[int]:
    """The live children of ``python -m webhooks serve`` run with ``OT_WEBHOOKS_PROCESSES``."""
    tasks = Path(f"/proc/{supervisor.pid}/task").iterdir()
    return [int(pid) for task in tasks for pid in (task / "children").read_text().split()]


async def store_order(transactions, name: str) -> None:
    """A USD 400.00 order paid by ``pi_<name>`` (transaction ``tx-<name>``, event ``ev-<name>``)."""
    await transactions.create_item(
        {
            "id": f"tx-{name}",
            "eventId": f"ev-{name}",
            "PaymentID": f"pi_{name}",
            "TotalAmount": 400.0,
            "IsRefunded": False,
        }
    )


async def deliver_twice_until_applied(base: str, events, deliveries: list[tuple[str, str]]) -> None:
    """Each delivery posted twice (each on its own connection), then waited for until applied."""
    # Each post on its own connection: the kernel spreads connections over the processes.
    first = await asyncio.gather(*(post(base, body, header) for body, header in deliveries))
    again = await asyncio.gather(*(post(base, body, header) for body, header in deliveries))
    assert [answer["duplicate"] for answer in first] == [False] * len(deliveries)
    assert [answer["duplicate"] for answer in again] == [True] * len(deliveries)
    ids = [json.loads(body)["id"] for body, _ in deliveries]
    async with asyncio.timeout(60):
        while "received" in [
            (await events.read_item(event_id, partition_key=bucket_of(event_id)))["state"] for event_id in ids
        ]:
            await asyncio.sleep(0.2)  # polling another process's progress


async def assert_twelve_refunds_counted_once(transactions, name: str) -> None:
    stored = await transactions.read_item(f"tx-{name}", partition_key=f"ev-{name}")
    assert sorted(stored["stripeRefunds"]) == sorted(f"re_system{n}" for n in range(1, 13))
    assert stored["stripeRefundedAmount"] == 144.0  # 12 refunds of 12.00, each counted once


async def test_two_processes_on_one_port_apply_every_event_once(environment, cosmos_client):
    database = cosmos_client.get_database_client(environment["OT_COSMOS_DATABASE"])
    transactions = database.get_container_client("transactions")
    await store_order(transactions, "two")
    supervisor, base = await serve_webhooks({**environment, "OT_WEBHOOKS_PROCESSES": "2"})
    try:
        assert len(server_processes(supervisor)) == 2
        deliveries = [signed_refund("pi_two", n) for n in range(1, 13)]
        await deliver_twice_until_applied(base, database.get_container_client("webhook-journal"), deliveries)
    finally:
        assert await stop(supervisor) == 0
    await assert_twelve_refunds_counted_once(transactions, "two")


async def test_when_one_server_process_dies_the_others_stop_and_the_set_exits_1(environment):
    supervisor, _ = await serve_webhooks({**environment, "OT_WEBHOOKS_PROCESSES": "2"})
    one, other = server_processes(supervisor)
    os.kill(one, signal.SIGKILL)
    async with asyncio.timeout(60):
        assert await supervisor.wait() == 1
    with pytest.raises(ProcessLookupError):  # stopped and reaped by the supervisor
        os.kill(other, 0)


async def test_answer_processes_hand_events_to_a_lower_priority_apply_process_which_applies_each_once(
    environment, cosmos_client, tmp_path
):
    database = cosmos_client.get_database_client(environment["OT_COSMOS_DATABASE"])
    transactions = database.get_container_client("transactions")
    await store_order(transactions, "split")
    split = {
        "OT_WEBHOOKS_PROCESSES": "2",
        "OT_WEBHOOKS_APPLY_PROCESSES": "1",
        "OT_WEBHOOKS_APPLY_NICENESS": "7",
    }
    log = tmp_path / "webhooks.log"
    supervisor, base = await serve_webhooks({**environment, **split}, log)
    try:
        children = server_processes(supervisor)
        assert len(children) == 3
        async with asyncio.timeout(30):
            while sorted(os.getpriority(os.PRIO_PROCESS, pid) for pid in children) != [0, 0, 7]:
                await asyncio.sleep(0.1)  # the apply process lowers its own priority as it starts
        deliveries = [signed_refund("pi_split", n) for n in range(1, 13)]
        await deliver_twice_until_applied(base, database.get_container_client("webhook-journal"), deliveries)
    finally:
        assert await stop(supervisor) == 0, log.read_text()
    await assert_twelve_refunds_counted_once(transactions, "split")


async def test_when_the_apply_process_dies_the_answer_processes_stop_and_the_set_exits_1(environment):
    split = {"OT_WEBHOOKS_PROCESSES": "1", "OT_WEBHOOKS_APPLY_PROCESSES": "1"}
    supervisor, _ = await serve_webhooks({**environment, **split})
    children = server_processes(supervisor)
    async with asyncio.timeout(30):
        while not (applying := [pid for pid in children if os.getpriority(os.PRIO_PROCESS, pid) > 0]):
            await asyncio.sleep(0.1)
    (answering,) = set(children) - set(applying)
    os.kill(applying[0], signal.SIGKILL)
    async with asyncio.timeout(60):
        assert await supervisor.wait() == 1
    with pytest.raises(ProcessLookupError):
        os.kill(answering, 0)
