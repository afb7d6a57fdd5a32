"""Cosmos DB behaviours the SDK samples rely on, as the stand-in answers them through the official SDK.

Each test fails on the stand-in before the change that it pins (see devstack/patches/).
"""

from __future__ import annotations

import aiohttp
import pytest
from azure.core.pipeline.transport import AioHttpTransport
from azure.cosmos import CosmosClient as SyncCosmosClient
from azure.cosmos import PartitionKey, ThroughputProperties
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import (
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceNotFoundError,
)

from devstack.cosmos import advance_clock

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(cosmos_client, cosmos_connection):
    return await cosmos_client.create_database_if_not_exists(cosmos_connection.database)


@pytest.fixture
async def container(database, request):
    created = await database.create_container(
        f"sem-{request.node.name}"[:60], partition_key=PartitionKey(path="/eventId")
    )
    yield created
    await database.delete_container(created)


async def ids(container, query="SELECT * FROM c", **kwargs):
    return sorted([row["id"] async for row in container.query_items(query, **kwargs)])


async def test_resource_ids_never_contain_a_slash_so_self_links_work(container):
    # Unpatched: some _rids were plain base64 with '/', and calls through _self raised ValueError.
    created = [await container.create_item({"id": f"o{n}", "eventId": "ev1"}) for n in range(300)]
    assert [item["id"] for item in created if "/" in item["_rid"]] == []
    for item in created:
        await container.delete_item(item, partition_key="ev1")
    assert await ids(container) == []


async def test_failing_batch_applies_nothing_and_reports_424_for_the_others(container):
    # Unpatched: statuses [201, 200, 412] and the first two operations stayed applied.
    current = await container.create_item({"id": "order", "eventId": "ev1", "n": 1})
    await container.replace_item("order", {"id": "order", "eventId": "ev1", "n": 2})
    stale = {"if_match_etag": current["_etag"]}
    with pytest.raises(CosmosBatchOperationError) as raised:
        await container.execute_item_batch(
            [
                ("create", ({"id": "new", "eventId": "ev1"},)),
                ("replace", ("order", {"id": "order", "eventId": "ev1", "n": 3})),
                ("replace", ("order", {"id": "order", "eventId": "ev1", "n": 4}), stale),
            ],
            partition_key="ev1",
        )
    statuses = [response["statusCode"] for response in raised.value.operation_responses]
    assert (statuses, raised.value.error_index) == ([424, 424, 412], 2)
    assert await ids(container) == ["order"]
    assert (await container.read_item("order", partition_key="ev1"))["n"] == 2


async def test_rolled_back_batch_leaves_no_trace_in_the_change_feed(container):
    await container.create_item({"id": "kept", "eventId": "ev1"})
    with pytest.raises(CosmosBatchOperationError):
        await container.execute_item_batch(
            [("upsert", ({"id": "kept", "eventId": "ev1", "n": 9},)), ("read", ("missing",))],
            partition_key="ev1",
        )
    changes = container.query_items_change_feed(start_time="Beginning")
    feed = [(item["id"], item.get("n")) async for item in changes]
    assert feed == [("kept", None)]


def test_query_needing_a_cross_partition_plan_falls_back_to_the_sdk_plan(cosmos_connection):
    # Unpatched: 400 "missing partition keys" without sub-status 1004, so the SDK gave up.
    with SyncCosmosClient(cosmos_connection.endpoint, cosmos_connection.key.get_secret_value()) as client:
        database = client.create_database_if_not_exists(cosmos_connection.database)
        container = database.create_container("sem-plan", partition_key=PartitionKey(path="/eventId"))
        try:
            for n, event_id in enumerate(["ev2", "ev1", "ev3"]):
                container.create_item({"id": f"o{n}", "eventId": event_id, "n": n})
            rows = list(container.query_items("SELECT c.id FROM c WHERE c.n >= 0 ORDER BY c.n DESC"))
            count = list(container.query_items("SELECT VALUE COUNT(1) FROM c"))
        finally:
            database.delete_container(container)
    assert [row["id"] for row in rows] == ["o2", "o1", "o0"]
    assert count == [3]


async def test_indexing_policy_reads_back_whole(database):
    # Unpatched: paths not declared were missing, so index_management.py failed with KeyError.
    policy = {
        "indexingMode": "consistent",
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": "/secret/*"}],
        "compositeIndexes": [
            [{"path": "/eventId", "order": "ascending"}, {"path": "/n", "order": "descending"}]
        ],
    }
    key = PartitionKey(path="/eventId")
    declared = await database.create_container("sem-index", key, indexing_policy=policy)
    plain = await database.create_container("sem-index-default", PartitionKey(path="/eventId"))
    try:
        read_back = (await declared.read())["indexingPolicy"]
        defaults = (await plain.read())["indexingPolicy"]
    finally:
        await database.delete_container(declared)
        await database.delete_container(plain)
    assert read_back["includedPaths"] == [{"path": "/*"}]
    assert read_back["excludedPaths"] == [{"path": "/secret/*"}, {"path": '/"_etag"/?'}]
    assert read_back["compositeIndexes"] == policy["compositeIndexes"]
    assert defaults["includedPaths"] == [{"path": "/*"}]
    assert defaults["excludedPaths"] == [{"path": '/"_etag"/?'}]


async def test_replacing_a_container_keeps_its_items(database, container):
    # Unpatched: the replaced container came back empty.
    await container.create_item({"id": "kept", "eventId": "ev1"})
    await database.replace_container(container, PartitionKey(path="/eventId"), default_ttl=3600)
    assert await ids(container) == ["kept"]


async def test_writes_and_reads_carry_session_tokens_that_session_clients_use(cosmos_connection, container):
    # Unpatched: no x-ms-session-token, so session-consistency clients had nothing to send.
    key = cosmos_connection.key.get_secret_value()
    async with CosmosClient(cosmos_connection.endpoint, key, consistency_level="Session") as client:
        session_database = client.get_database_client(cosmos_connection.database)
        session_container = session_database.get_container_client(container.id)
        written = await session_container.create_item({"id": "s", "eventId": "ev1"})
        token = written.get_response_headers()["x-ms-session-token"]
        read = await session_container.read_item("s", partition_key="ev1", session_token=token)
        read_token = session_container.client_connection.last_response_headers["x-ms-session-token"]
    assert token.startswith("0:")
    assert read["id"] == "s"
    assert int(read_token.rsplit("#", 1)[1]) >= int(token.rsplit("#", 1)[1])


async def test_point_reads_do_not_make_the_sdk_refetch_partition_key_ranges(cosmos_connection, container):
    # Unpatched: answers named no partition key range (and the range's id was a number), so the SDK
    # took each answer for one from a split range and read /pkranges again before every point read.
    requested: list[str] = []

    async def count(_: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestStartParams) -> None:
        requested.append(params.url.path)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(count)
    key = cosmos_connection.key.get_secret_value()
    async with (
        aiohttp.ClientSession(trace_configs=[tracing]) as session,
        CosmosClient(
            cosmos_connection.endpoint, key, transport=AioHttpTransport(session=session, session_owner=False)
        ) as client,
    ):
        counted = client.get_database_client(cosmos_connection.database).get_container_client(container.id)
        await counted.create_item({"id": "r", "eventId": "ev1"})
        await counted.read_item("r", partition_key="ev1")
        requested.clear()
        for _ in range(20):
            await counted.read_item("r", partition_key="ev1")
    assert len(requested) == 20
    assert not [path for path in requested if path.endswith("/pkranges")]


async def test_items_expire_by_container_default_and_their_own_ttl(database, cosmos_connection):
    # Unpatched: ttl was stored but never enforced.
    container = await database.create_container("sem-ttl", PartitionKey(path="/eventId"), default_ttl=60)
    try:
        await container.create_item({"id": "default", "eventId": "ev1"})
        await container.create_item({"id": "forever", "eventId": "ev1", "ttl": -1})
        await container.create_item({"id": "short", "eventId": "ev1", "ttl": 10})
        await advance_clock(cosmos_connection.endpoint, seconds=11)
        feed = [item["id"] async for item in container.query_items_change_feed(start_time="Beginning")]
        after_short = await ids(container)
        with pytest.raises(CosmosResourceNotFoundError):
            await container.read_item("short", partition_key="ev1")
        await advance_clock(cosmos_connection.endpoint, seconds=50)
        after_default = await ids(container, partition_key="ev1")
    finally:
        await database.delete_container(container)
    assert after_short == ["default", "forever"]
    assert feed == ["default", "forever"]
    assert after_default == ["forever"]


async def test_item_ttl_needs_a_container_default(container, cosmos_connection):
    await container.create_item({"id": "stays", "eventId": "ev1", "ttl": 1})
    await advance_clock(cosmos_connection.endpoint, seconds=2)
    assert await ids(container) == ["stays"]


async def test_delete_all_items_by_partition_key_removes_only_that_partition(container):
    # Unpatched: the route did not exist ("no route").
    for item_id, event_id in (("a", "ev1"), ("b", "ev1"), ("c", "ev2")):
        await container.create_item({"id": item_id, "eventId": event_id})
    await container.delete_all_items_by_partition_key("ev1")
    assert await ids(container) == ["c"]


async def test_container_throughput_reads_back_and_can_be_replaced(database):
    # Unpatched: there was no offers resource ("no route").
    container = await database.create_container(
        "sem-offer", PartitionKey(path="/eventId"), offer_throughput=1000
    )
    try:
        initial = await container.get_throughput()
        await container.replace_throughput(1200)
        replaced = await container.get_throughput()
        with pytest.raises(CosmosHttpResponseError) as refused:
            await container.replace_throughput(350)
        after_refusal = await container.get_throughput()
    finally:
        await database.delete_container(container)
    assert (initial.offer_throughput, replaced.offer_throughput) == (1000, 1200)
    assert refused.value.status_code == 400
    assert after_refusal.offer_throughput == 1200


async def test_database_autoscale_throughput_reads_back_and_can_be_replaced(cosmos_client):
    autoscale = ThroughputProperties(auto_scale_max_throughput=4000)
    shared = await cosmos_client.create_database("sem-shared-db", offer_throughput=autoscale)
    try:
        initial = await shared.get_throughput()
        await shared.replace_throughput(ThroughputProperties(auto_scale_max_throughput=6000))
        replaced = await shared.get_throughput()
    finally:
        await cosmos_client.delete_database(shared)
    assert (initial.auto_scale_max_throughput, replaced.auto_scale_max_throughput) == (4000, 6000)
