"""The Cosmos DB stand-in's change feed (latest-version mode), read through the async SDK's pull model.

Each test fails on the stand-in without its change feed (it answered every read with all items, or 304).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.cosmos import PartitionKey

from devstack.cosmos import advance_clock

pytestmark = pytest.mark.integration


@pytest.fixture
async def container(cosmos_client, cosmos_connection, request):
    database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
    created = await database.create_container(
        f"feed-{request.node.name}"[:60], partition_key=PartitionKey(path="/eventId")
    )
    yield created
    await database.delete_container(created)


async def read_feed(container, **kwargs):
    """One pass over the feed: the changed items' (id, n) and the continuation to resume from."""
    items = [(item["id"], item.get("n")) async for item in container.query_items_change_feed(**kwargs)]
    # As the SDK's samples do: the continuation is the etag of the pass's last answer, also when empty.
    return items, container.client_connection.last_response_headers["etag"]


async def write(container, event_id, item_id, n):
    await container.upsert_item({"id": item_id, "eventId": event_id, "n": n})


async def test_feed_from_beginning_lists_each_changed_item_once_latest_version_in_change_order(container):
    await write(container, "ev1", "a", 1)
    await write(container, "ev2", "b", 1)
    await write(container, "ev1", "c", 1)
    await write(container, "ev1", "a", 2)
    await write(container, "ev1", "d", 1)
    await container.delete_item("d", partition_key="ev1")

    items, _ = await read_feed(container, start_time="Beginning")

    assert items == [("b", 1), ("c", 1), ("a", 2)]


async def test_continuation_resumes_exactly_after_the_last_read_change(container):
    await write(container, "ev1", "a", 1)
    first, continuation = await read_feed(container, start_time="Beginning")
    await write(container, "ev2", "b", 1)
    await write(container, "ev1", "a", 2)

    second, continuation = await read_feed(container, continuation=continuation)
    third, _ = await read_feed(container, continuation=continuation)

    assert first == [("a", 1)]
    assert second == [("b", 1), ("a", 2)]
    assert third == []


async def test_pages_split_a_long_feed_without_loss_or_repeats(container):
    for n in range(7):
        await write(container, "ev1", f"item-{n}", n)
    pages = container.query_items_change_feed(start_time="Beginning", max_item_count=3).by_page()
    sizes = []
    seen = []
    async for page in pages:
        batch = [item["id"] async for item in page]
        sizes.append(len(batch))
        seen.extend(batch)
    assert seen == [f"item-{n}" for n in range(7)]
    assert sizes == [3, 3, 1]


async def test_feed_from_now_sees_only_later_changes(container):
    await write(container, "ev1", "before", 1)
    nothing, continuation = await read_feed(container)
    await write(container, "ev1", "after", 1)

    later, _ = await read_feed(container, continuation=continuation)

    assert nothing == []
    assert later == [("after", 1)]


async def test_feed_from_a_point_in_time_skips_items_last_written_before_it(container, cosmos_connection):
    await write(container, "ev1", "old", 1)
    start = datetime.fromtimestamp(await advance_clock(cosmos_connection.endpoint, seconds=10) / 1000, UTC)
    await write(container, "ev1", "new", 1)

    items, _ = await read_feed(container, start_time=start)

    assert items == [("new", 1)]


async def test_feed_scoped_by_partition_key_lists_only_that_partition(container):
    await write(container, "ev1", "a", 1)
    await write(container, "ev2", "b", 1)
    await write(container, "ev1", "c", 1)

    ev1, _ = await read_feed(container, start_time="Beginning", partition_key="ev1")
    ev2, _ = await read_feed(container, start_time="Beginning", partition_key="ev2")

    assert ev1 == [("a", 1), ("c", 1)]
    assert ev2 == [("b", 1)]


async def test_feed_scoped_by_feed_range_lists_the_items_in_that_range(container):
    await write(container, "ev1", "a", 1)
    await write(container, "ev2", "b", 1)
    whole = [feed_range async for feed_range in container.read_feed_ranges()]
    ev2_range = await container.feed_range_from_partition_key("ev2")

    everything, _ = await read_feed(container, start_time="Beginning", feed_range=whole[0])
    only_ev2, _ = await read_feed(container, start_time="Beginning", feed_range=ev2_range)

    assert len(whole) == 1
    assert everything == [("a", 1), ("b", 1)]
    assert only_ev2 == [("b", 1)]
