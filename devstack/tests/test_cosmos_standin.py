"""The Cosmos DB stand-in's patched defects, driven through the real azure-cosmos async SDK.

Each test fails on the unpatched ``@vercel/cosmosdb-server`` (see devstack/patches/).
"""

from __future__ import annotations

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.exceptions import CosmosResourceNotFoundError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def orders(cosmos_client, cosmos_connection):
    database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
    container = await database.create_container_if_not_exists(
        "standin-orders", partition_key=PartitionKey(path="/eventId")
    )
    for event_id, count in (("ev1", 5), ("ev2", 3)):
        for n in range(count):
            await container.upsert_item(
                {"id": f"{event_id}-{n}", "eventId": event_id, "n": n, "tags": ["vip"]}
            )
    return container


async def test_reading_a_missing_document_answers_404(orders):
    # Unpatched: the handler dereferences undefined data and answers 500.
    with pytest.raises(CosmosResourceNotFoundError) as raised:
        await orders.read_item("no-such-order", partition_key="ev1")
    assert raised.value.status_code == 404


async def test_batch_takes_its_partition_key_from_the_header(orders):
    # Unpatched: every operation fails, the server wants a partition key per operation.
    results = await orders.execute_item_batch(
        [
            ("upsert", ({"id": "ev1-batch", "eventId": "ev1", "n": 99},)),
            ("read", ("ev1-0",)),
        ],
        partition_key="ev1",
    )
    assert [result["statusCode"] for result in results] == [201, 200]
    assert (await orders.read_item("ev1-batch", partition_key="ev1"))["n"] == 99


async def test_batch_applies_patch_operations(orders):
    # Unpatched: the batch is refused with 400, "Operation type 'Patch' is not supported in Batch".
    current = await orders.read_item("ev1-1", partition_key="ev1")
    results = await orders.execute_item_batch(
        [
            (
                "patch",
                ("ev1-1", [{"op": "set", "path": "/state", "value": "queued"}]),
                {"if_match_etag": current["_etag"]},
            )
        ],
        partition_key="ev1",
    )
    assert results[0]["statusCode"] == 200
    stored = await orders.read_item("ev1-1", partition_key="ev1")
    assert (stored["state"], stored["n"]) == ("queued", current["n"])


async def test_batch_asked_for_a_minimal_return_answers_no_documents(orders):
    # Unpatched: every write's document comes back whatever the request prefers.
    # Its own partition: the other tests count the documents of ev1.
    writes = [("upsert", ({"id": f"minimal-{n}", "eventId": "ev-minimal", "n": n},)) for n in range(2)]
    minimal = await orders.execute_item_batch(
        [*writes, ("read", ("minimal-0",))], partition_key="ev-minimal", no_response=True
    )
    assert [result["statusCode"] for result in minimal] == [201, 201, 200]
    assert ["resourceBody" in result for result in minimal] == [False, False, True]  # a read still answers
    stored = await orders.read_item("minimal-1", partition_key="ev-minimal")
    assert (stored["n"], stored["_etag"]) == (1, minimal[1]["eTag"])

    full = await orders.execute_item_batch(writes, partition_key="ev-minimal")
    assert [result["resourceBody"]["n"] for result in full] == [0, 1]


async def test_query_with_partition_key_returns_only_that_partition(orders):
    # Unpatched: rows of every partition come back.
    rows = [
        row
        async for row in orders.query_items(
            "SELECT * FROM c WHERE ARRAY_CONTAINS(c.tags, 'vip')", partition_key="ev1"
        )
    ]
    assert rows
    assert {row["eventId"] for row in rows} == {"ev1"}


async def test_query_filtering_another_partition_returns_nothing(orders):
    rows = [
        row
        async for row in orders.query_items("SELECT * FROM c WHERE c.eventId = 'ev2'", partition_key="ev1")
    ]
    assert rows == []


async def read_many(orders, ids, partition_key):
    query = "SELECT * FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
    rows = orders.query_items(query, parameters=[{"name": "@ids", "value": ids}], partition_key=partition_key)
    return [(row["id"], row["n"]) async for row in rows]


async def test_reading_many_ids_returns_each_present_document_of_the_partition_once(orders):
    # This query shape is answered by id lookups rather than a scan of the partition: same result.
    found = await read_many(orders, ["ev1-1", "ev1-2", "ev1-2", "ev2-0", "missing", 7], "ev1")
    assert sorted(found) == [("ev1-1", 1), ("ev1-2", 2)]
    assert await read_many(orders, [], "ev1") == []


async def test_reading_many_ids_sees_replacements_and_deletions(orders):
    await orders.upsert_item({"id": "ev1-lookup", "eventId": "ev1", "n": 7})
    await orders.upsert_item({"id": "ev1-lookup", "eventId": "ev1", "n": 8})
    assert await read_many(orders, ["ev1-lookup"], "ev1") == [("ev1-lookup", 8)]
    await orders.delete_item("ev1-lookup", partition_key="ev1")
    assert await read_many(orders, ["ev1-lookup"], "ev1") == []


async def test_partition_scoped_query_pages_by_continuation(orders):
    pages = orders.query_items(
        "SELECT c.id FROM c WHERE c.n < 5 ORDER BY c.n", partition_key="ev1", max_item_count=2
    ).by_page()
    seen = []
    page_count = 0
    async for page in pages:
        page_count += 1
        seen.extend([row["id"] async for row in page])
    assert seen == [f"ev1-{n}" for n in range(5)]
    assert page_count == 3
