"""The Cosmos DB stand-in's change feed in all-versions-and-deletes mode, read through the async SDK.

Each test fails on the stand-in without that mode (it answered every such read with 400); the batch test
also fails when a rolled-back batch leaves its versions behind.
"""

from __future__ import annotations

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError

from devstack.cosmos import advance_clock

pytestmark = pytest.mark.integration

ALL_VERSIONS = "AllVersionsAndDeletes"


@pytest.fixture
async def container(cosmos_client, cosmos_connection, request):
    database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
    created = await database.create_container(
        f"versions-{request.node.name}"[:60], partition_key=PartitionKey(path="/eventId")
    )
    yield created
    await database.delete_container(created)


async def read_versions(container, **kwargs):
    """One pass over the feed: its raw change records and the continuation to resume from."""
    records = [record async for record in container.query_items_change_feed(mode=ALL_VERSIONS, **kwargs)]
    return records, container.client_connection.last_response_headers["etag"]


def summary(records):
    """(operation, id, n) of each record: a delete names its item in the metadata and has no current."""
    return [
        (
            record["metadata"]["operationType"],
            record["current"]["id"] if "current" in record else record["metadata"]["id"],
            record.get("current", {}).get("n"),
        )
        for record in records
    ]


async def test_every_create_replace_and_delete_since_now_appears_in_order(container):
    await container.upsert_item({"id": "before", "eventId": "ev1", "n": 0})
    _, continuation = await read_versions(container)  # from now: remembers where now is

    await container.create_item({"id": "a", "eventId": "ev1", "n": 1})
    await container.replace_item("a", {"id": "a", "eventId": "ev1", "n": 2})
    await container.upsert_item({"id": "a", "eventId": "ev1", "n": 3})
    await container.delete_item("a", partition_key="ev1")
    records, continuation = await read_versions(container, continuation=continuation)
    nothing_new, _ = await read_versions(container, continuation=continuation)

    assert summary(records) == [
        ("create", "a", 1),
        ("replace", "a", 2),
        ("replace", "a", 3),
        ("delete", "a", None),
    ]
    lsns = [record["metadata"]["lsn"] for record in records]
    assert lsns == sorted(lsns)
    assert len(set(lsns)) == len(lsns)
    assert [record["metadata"].get("previousImageLSN") for record in records[1:]] == lsns[:-1]
    assert records[3]["metadata"]["partitionKey"] == {"eventId": "ev1"}
    assert nothing_new == []


async def test_a_partition_scoped_read_sees_only_that_partitions_versions(container):
    _, continuation = await read_versions(container, partition_key="ev2")

    await container.create_item({"id": "a", "eventId": "ev1", "n": 1})
    await container.create_item({"id": "b", "eventId": "ev2", "n": 1})
    await container.delete_item("a", partition_key="ev1")
    await container.delete_item("b", partition_key="ev2")
    records, _ = await read_versions(container, continuation=continuation)

    assert summary(records) == [("create", "b", 1), ("delete", "b", None)]


async def test_a_rolled_back_batch_leaves_no_version(container):
    await container.create_item({"id": "taken", "eventId": "ev1", "n": 0})
    _, continuation = await read_versions(container)

    with pytest.raises(CosmosBatchOperationError):
        await container.execute_item_batch(
            [
                ("create", ({"id": "new", "eventId": "ev1", "n": 1},)),
                ("create", ({"id": "taken", "eventId": "ev1"},)),
            ],
            partition_key="ev1",
        )
    await container.upsert_item({"id": "after", "eventId": "ev1", "n": 2})
    records, _ = await read_versions(container, continuation=continuation)

    assert summary(records) == [("create", "after", 2)]


async def test_expiry_by_time_to_live_is_a_delete_marked_as_expired(cosmos_client, cosmos_connection):
    database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
    container = await database.create_container("versions-ttl", PartitionKey(path="/eventId"), default_ttl=60)
    try:
        _, continuation = await read_versions(container)
        await container.create_item({"id": "short", "eventId": "ev1", "n": 1})
        await advance_clock(cosmos_connection.endpoint, seconds=61)
        records, _ = await read_versions(container, continuation=continuation)
    finally:
        await database.delete_container(container)

    assert summary(records) == [("create", "short", 1), ("delete", "short", None)]
    assert [record["metadata"]["timeToLiveExpired"] for record in records] == [False, True]
