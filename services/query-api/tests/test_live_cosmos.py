"""Live updates against the Cosmos DB stand-in, through the real app: feed -> read model -> /api/stream."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp.test_utils import TestClient, TestServer
from live_fakes import read_event
from query_api_support import bearer, settings, token
from query_documents import transaction

from devstack.cosmos import connection_string
from devstack.testing import fresh_database
from query_api.app import create_app
from query_api.readside import ReadSide

pytestmark = pytest.mark.integration

# The SPEC's bound on the time from a write to the stream: a bound on the wait, not a speed assertion.
PROPAGATION_BOUND_SECONDS = 2.0


def stored(n: int, **fields) -> dict:
    """A transaction as a writer sends it to Cosmos DB (no system fields)."""
    return {key: value for key, value in transaction(n, **fields).items() if not key.startswith("_")}


@pytest.fixture
async def database(cosmos_client):
    async with fresh_database(cosmos_client, "live") as name:
        yield name


@pytest.fixture
def transactions(cosmos_client, database):
    return cosmos_client.get_database_client(database).get_container_client("transactions")


@contextlib.asynccontextmanager
async def replica(cosmos_connection, database):
    """The query API over the stand-in, served on loopback once its read model has caught up."""
    config = settings(
        cosmos_endpoint=None,
        cosmos_connection_string=connection_string(cosmos_connection.endpoint),
        cosmos_database=database,
        query_api_feed_poll_seconds=0.1,
        query_api_stream_heartbeat_seconds=0.5,
    )
    side = ReadSide()
    async with TestClient(TestServer(create_app(config, read_side=side), host="127.0.0.1")) as client:
        await asyncio.wait_for(side.wait_loaded(), 30)
        yield client


@contextlib.asynccontextmanager
async def stream(client, *, events=None, last_event_id=None):
    headers = bearer(token(events))
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await client.get("/api/stream", headers=headers)
    try:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        yield response
    finally:
        response.close()


async def next_change(response):
    async with asyncio.timeout(PROPAGATION_BOUND_SECONDS):
        return await read_event(response)


async def test_the_replica_loads_the_latest_versions_and_not_the_deleted(
    cosmos_connection, database, transactions
):
    for n in range(1, 6):
        await transactions.upsert_item(stored(n, event="a"))
    await transactions.upsert_item(stored(2, event="a", TotalAmount=250.0))
    await transactions.delete_item("tx3", partition_key="a")
    async with replica(cosmos_connection, database) as client:
        page = await client.get("/api/transactions", headers=bearer(token()))
        body = await page.json()

        assert sorted(row["id"] for row in body["rows"]) == ["tx1", "tx2", "tx4", "tx5"]
        assert next(row for row in body["rows"] if row["id"] == "tx2")["TotalAmount"] == 250.0
        assert (await client.get("/api/transactions/tx3", headers=bearer(token()))).status == 404


async def test_a_write_reaches_the_read_model_and_the_stream_clients_of_its_event(
    cosmos_connection, database, transactions
):
    await transactions.upsert_item(stored(1, event="a"))
    async with (
        replica(cosmos_connection, database) as client,
        stream(client) as everything,
        stream(client, events=["b"]) as only_b,
    ):
        await transactions.upsert_item(stored(2, event="a"))
        sale = await next_change(everything)
        await transactions.upsert_item(stored(1, event="a", IsRefunded=True, RefundedRemarks="asked"))
        refund = await next_change(everything)
        await transactions.upsert_item(stored(3, event="b"))
        other_event = await next_change(everything)
        seen_by_b = await next_change(only_b)

        assert (sale.event, sale.json()["kind"], sale.json()["id"]) == ("change", "sale", "tx2")
        assert (refund.json()["kind"], refund.json()["id"]) == ("refund", "tx1")
        assert refund.json()["transaction"]["IsRefunded"] is True
        assert int(sale.id) < int(refund.id) < int(other_event.id)
        # The b-scoped client's first event is b's: the changes of event a never reached it.
        assert (seen_by_b.id, seen_by_b.json()["eventId"]) == (other_event.id, "b")

        detail = await client.get("/api/transactions/tx1", headers=bearer(token()))
        assert (await detail.json())["IsRefunded"] is True


async def test_a_delete_is_pushed_and_leaves_the_read_model(cosmos_connection, database, transactions):
    await transactions.upsert_item(stored(1, event="a"))
    async with replica(cosmos_connection, database) as client, stream(client) as everything:
        await transactions.delete_item("tx1", partition_key="a")
        removal = await next_change(everything)

        assert (removal.json()["kind"], removal.json()["transaction"]) == ("removal", None)
        assert (await client.get("/api/transactions/tx1", headers=bearer(token()))).status == 404


async def test_a_client_resuming_with_last_event_id_misses_nothing(cosmos_connection, database, transactions):
    def disputed(rows):
        return rows.get("tx2", {}).get("IsDisputed") is True

    async with replica(cosmos_connection, database) as client, stream(client) as observer:
        async with stream(client) as first:
            await transactions.upsert_item(stored(1))
            last_seen = await next_change(first)
        for n in (2, 3, 4):  # written while the client is away
            await transactions.upsert_item(stored(n))
        await transactions.upsert_item(stored(2, IsDisputed=True))
        # Once a client still connected has seen the last change, every change was published.
        published = await changes_until(observer, disputed)

        async with stream(client, last_event_id=last_seen.id) as resumed:
            missed = await changes_until(resumed, disputed)

        assert [(e.id, e.data) for e in missed] == [(e.id, e.data) for e in published[1:]]
        # Changes to one transaction read in the same page come as one event with its newest row.
        assert {event.json()["id"] for event in missed} == {"tx2", "tx3", "tx4"}
        positions = [int(event.id) for event in missed]
        assert positions == sorted(set(positions))
        assert positions[0] > int(last_seen.id)


async def changes_until(response, done):
    """Change events until ``done(newest row by id)`` holds, within the propagation bound."""
    events, rows = [], {}
    async with asyncio.timeout(PROPAGATION_BOUND_SECONDS):
        while not done(rows):
            event = await read_event(response)
            events.append(event)
            rows[event.json()["id"]] = event.json()["transaction"]
    return events


async def test_a_client_resuming_from_before_the_buffer_is_told_to_reload(
    cosmos_connection, database, transactions
):
    await transactions.upsert_item(stored(1))
    await transactions.upsert_item(stored(1, TotalAmount=11.0))
    async with replica(cosmos_connection, database) as client:
        async with stream(client, last_event_id="1") as resumed:
            reload = await next_change(resumed)
            await transactions.upsert_item(stored(2))
            after = await next_change(resumed)

        assert reload.event == "reload"
        assert reload.json()["lastEventId"] == "1"
        assert int(reload.id) < int(after.id)
        response = await client.get("/api/stream", headers={**bearer(token()), "Last-Event-ID": "yesterday"})
        assert response.status == 400
        assert (await response.json())["parameter"] == "Last-Event-ID"


async def test_an_idle_stream_gets_heartbeats_and_a_stream_needs_a_token(cosmos_connection, database):
    async with replica(cosmos_connection, database) as client:
        assert (await client.get("/api/stream")).status == 401
        async with stream(client) as idle, asyncio.timeout(5):
            greeting = await read_event(idle, skip_comments=False)
            heartbeat = await read_event(idle, skip_comments=False)
        assert (greeting.comments, heartbeat.comments) == (["connected"], ["keep-alive"])
