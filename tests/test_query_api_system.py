"""System test of the query API through its real entry points (`python -m query_api serve` and
`python -m query_api token`) against the Cosmos DB stand-in: it loads, turns ready, and a scoped
token sees only its events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import pytest
from system_processes import run, serve, service_env, stop

from devstack.testing import fresh_database
from otcommon.schemas import TicketTransaction
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer

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
    async with fresh_database(cosmos_client, "query") as database:
        transactions = CosmosContainer.of(
            cosmos_client, database=database, spec=DEFAULT_TOPOLOGY.container("transactions")
        )
        for n, event in enumerate(["ev1", "ev1", "ev2"]):
            await transactions.upsert(stored_transaction(n, event))
        # The query API opens no Service Bus link of its own (service_env's default says so).
        yield service_env(cosmos_connection, database, OT_QUERY_API_JWT_SECRET=SECRET)


async def local_token(env: dict[str, str], *events: str) -> str:
    arguments = ["--events", *events] if events else []
    finished = await run("query_api", "token", *arguments, env=env)
    assert finished.code == 0, finished.err
    return finished.out.strip()


async def test_serves_the_stored_transactions_to_a_local_token_scoped_to_its_events(environment):
    process, base = await serve("query_api", env=environment, port_setting="OT_QUERY_API_HTTP_PORT")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/analytics") as response:
                assert response.status == 401
            everything = {"Authorization": f"Bearer {await local_token(environment)}"}
            async with session.get(f"{base}/api/analytics", headers=everything) as response:
                assert (await response.json())["ordersCount"] == 3
            only_ev2 = {"Authorization": f"Bearer {await local_token(environment, 'ev2')}"}
            async with session.get(f"{base}/api/transactions", headers=only_ev2) as response:
                body = await response.json()
            assert [row["id"] for row in body["rows"]] == ["tx2"]
            async with session.get(f"{base}/api/events", headers=only_ev2) as response:
                assert [event["eventId"] for event in (await response.json())["events"]] == ["ev2"]
    finally:
        assert await stop(process) == 0
