"""The start-up load reads every transaction, from the change feed or a container, fake and Cosmos alike."""

from __future__ import annotations

import uuid

import pytest
from live_fakes import ListChangeFeed
from query_documents import transaction

from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, InMemoryContainer, provision
from query_api.changefeed import CosmosChangeFeed
from query_api.loading import ALL_TRANSACTIONS, load_from_change_feed, load_transactions
from query_api.metrics import compute_metrics
from query_api.readmodel import ReadModel
from query_api.scope import EventScope

DOCUMENTS = [transaction(n, event=("a", "b", "c")[n % 3], TotalAmount=float(n)) for n in range(23)]


def without_system_fields(document):
    return {key: value for key, value in document.items() if not key.startswith("_")}


async def check_load(container) -> None:
    for document in DOCUMENTS:
        await container.upsert(without_system_fields(document))
    bad = {**without_system_fields(transaction(99)), "TotalTickets": "many"}
    await container.upsert(bad)

    model = ReadModel()
    report = await load_transactions(container, model, page_size=5)

    assert (report.read, report.applied) == (24, 23)
    assert [(r.document_id, r.reason) for r in report.rejected] == [
        ("tx99", "TotalTickets: expected a whole number")
    ]
    metrics = compute_metrics(model.rows(EventScope.everything()))
    assert metrics.orders_count == 23
    assert metrics.gross_revenue == sum(range(23))
    assert all(row["_ts"] > 0 for row in model.rows(EventScope.everything()).select("_ts").to_dicts())


async def test_load_from_the_in_memory_container():
    container = InMemoryContainer(
        "transactions",
        partition_key_path="/eventId",
        queries={ALL_TRANSACTIONS: lambda documents, _parameters: documents},
    )
    await check_load(container)


@pytest.mark.integration
async def test_load_from_cosmos(cosmos_client):
    database = f"query-{uuid.uuid4().hex[:10]}"
    await provision(cosmos_client, database=database, topology=DEFAULT_TOPOLOGY)
    try:
        container = CosmosContainer.of(
            cosmos_client, database=database, spec=DEFAULT_TOPOLOGY.container("transactions")
        )
        await check_load(container)
    finally:
        await cosmos_client.delete_database(database)


# -- the load every deployment runs: the change feed's latest versions from the beginning --------


async def check_feed_load(feed, *, write, delete) -> None:
    """23 documents, one refused, one replaced and one deleted: the load holds each live one once."""
    for document in DOCUMENTS:
        await write(without_system_fields(document))
    await write({**without_system_fields(transaction(99)), "TotalTickets": "many"})
    await write({**without_system_fields(DOCUMENTS[4]), "TotalAmount": 1000.0})
    await delete(DOCUMENTS[7])

    model = ReadModel()
    report = await load_from_change_feed(feed, model, page_size=5)

    assert (report.read, report.applied) == (23, 22)
    assert [(r.document_id, r.reason) for r in report.rejected] == [
        ("tx99", "TotalTickets: expected a whole number")
    ]
    held = model.rows(EventScope.everything())
    assert sorted(held["id"].to_list()) == sorted(d["id"] for d in DOCUMENTS if d["id"] != "tx7")
    assert model.get(EventScope.everything(), "tx4")["TotalAmount"] == 1000.0
    assert compute_metrics(held).gross_revenue == sum(range(23)) - 4 - 7 + 1000


async def test_load_from_the_in_memory_change_feed():
    feed = ListChangeFeed()

    async def write(document):
        feed.write({**document, "_ts": len(feed.records) + 1})

    async def delete(document):
        feed.delete(document["id"], ts=len(feed.records) + 1)

    await check_feed_load(feed, write=write, delete=delete)


@pytest.mark.integration
async def test_load_from_the_cosmos_change_feed(cosmos_client):
    database = f"query-{uuid.uuid4().hex[:10]}"
    await provision(cosmos_client, database=database, topology=DEFAULT_TOPOLOGY)
    try:
        container = cosmos_client.get_database_client(database).get_container_client("transactions")

        async def delete(document):
            await container.delete_item(document["id"], partition_key=document["eventId"])

        await check_feed_load(CosmosChangeFeed(container), write=container.upsert_item, delete=delete)
    finally:
        await cosmos_client.delete_database(database)
