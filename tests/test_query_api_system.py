"""System test of the query API through its real entry points (`python -m query_api serve` and
`python -m query_api token`) against the Cosmos DB stand-in: it loads, turns ready, and a scoped
token sees only its events.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import aiohttp
import pytest

from devstack.cosmos import connection_string as cosmos_connection_string
from devstack.servicebus.testing import free_port
from otcommon.schemas import TicketTransaction
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, provision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "a-system-test-secret-of-at-least-32-bytes"


def stored_transaction(n: int, event: str) -> dict:
    return TicketTransaction.model_validate(
        {
            "id": f"tx{n}",
            "eventId": event,
            "EventName": f"Event {event}",
            "ticketId": f"T{n}",
            "Name": f"Buyer {n}",
            "Email": f"buyer{n}@example.com",
            "TicketTypes": "General",
            "TotalTickets": 2,
            "TotalAmount": 25.0,
            "PurchaseDate": "2026-05-01T12:00:00Z",
            "PurchaseFrom": "online",
            "IsValid": True,
        }
    ).to_json_dict()


@pytest.fixture
async def environment(cosmos_client, cosmos_connection) -> AsyncIterator[dict[str, str]]:
    database = f"query-{uuid.uuid4().hex[:10]}"
    await provision(cosmos_client, database=database, topology=DEFAULT_TOPOLOGY)
    transactions = CosmosContainer.of(
        cosmos_client, database=database, spec=DEFAULT_TOPOLOGY.container("transactions")
    )
    for n, event in enumerate(["ev1", "ev1", "ev2"]):
        await transactions.upsert(stored_transaction(n, event))
    try:
        yield {
            **os.environ,
            "OT_COSMOS_CONNECTION_STRING": cosmos_connection_string(cosmos_connection.endpoint),
            "OT_COSMOS_DATABASE": database,
            # The query API opens no Service Bus link of its own; the shared settings still want one.
            "OT_SERVICEBUS_CONNECTION_STRING": (
                "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;"
            ),
            "OT_QUERY_API_JWT_SECRET": SECRET,
            "OT_LOG_FORMAT": "json",
        }
    finally:
        await cosmos_client.delete_database(database)


async def serve(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "query_api", "serve", env={**env, "OT_QUERY_API_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session, asyncio.timeout(90):
        while True:
            assert process.returncode is None, "query-api exited before it was ready"
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return process, base
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.2)


def local_token(env: dict[str, str], *events: str) -> str:
    arguments = ["--events", *events] if events else []
    return subprocess.run(
        [sys.executable, "-m", "query_api", "token", *arguments],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def test_serves_the_stored_transactions_to_a_local_token_scoped_to_its_events(environment):
    process, base = await serve(environment)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/analytics") as response:
                assert response.status == 401
            everything = {"Authorization": f"Bearer {local_token(environment)}"}
            async with session.get(f"{base}/api/analytics", headers=everything) as response:
                assert (await response.json())["ordersCount"] == 3
            only_ev2 = {"Authorization": f"Bearer {local_token(environment, 'ev2')}"}
            async with session.get(f"{base}/api/transactions", headers=only_ev2) as response:
                body = await response.json()
            assert [row["id"] for row in body["rows"]] == ["tx2"]
            async with session.get(f"{base}/api/events", headers=only_ev2) as response:
                assert [event["eventId"] for event in (await response.json())["events"]] == ["ev2"]
    finally:
        process.terminate()
        assert await process.wait() == 0
