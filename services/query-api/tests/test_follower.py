"""The follower: load after taking the feed's start point, apply the feed, publish changes after catch-up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

import pytest
from live_fakes import ListChangeFeed
from query_documents import transaction
from structlog.testing import capture_logs

from otcommon.http import Principal
from query_api.follower import Backoff, ChangeFeedFollower, ReadSideNotReadyError
from query_api.hub import ChangeHub
from query_api.live import LiveUpdateOptions, LiveUpdates
from query_api.readmodel import ReadModel
from query_api.scope import EventScope

FAST = LiveUpdateOptions(poll_seconds=0.01, backoff=Backoff(initial_seconds=0.001, max_seconds=0.01))
EVERYONE = Principal("admin")


def ids(model: ReadModel) -> list[str]:
    return sorted(model.rows(EventScope.everything())["id"].to_list())


def holding(feed: ListChangeFeed, documents) -> ListChangeFeed:
    """``feed`` with ``documents`` written before the follower starts (the load's to read)."""
    for document in documents:
        feed.write(document)
    return feed


@contextlib.asynccontextmanager
async def following(feed, *, options=FAST):
    live = LiveUpdates(model=ReadModel(), options=options)
    async with live.following(feed=feed) as follower:
        await asyncio.wait_for(follower.next_pass(), 5)
        yield live, follower


async def test_a_write_the_load_did_not_see_comes_through_the_feed():
    feed = holding(ListChangeFeed(), [transaction(n) for n in range(1, 5)])
    # Written while the load reads (after its first page): only the all-versions pass has it.
    feed.during_load = lambda: feed.write(transaction(9, ts=3))
    async with following(feed) as (live, follower):
        assert ids(live._model) == ["tx1", "tx2", "tx3", "tx4", "tx9"]
        assert follower.status.loaded
        assert follower.status.caught_up


async def test_changes_after_catch_up_are_applied_and_published_with_their_kind():
    feed = holding(ListChangeFeed(), [transaction(1, ts=1), transaction(2, ts=1)])
    async with following(feed) as (live, follower):
        subscriber = live.hub.subscribe(EVERYONE)
        refund = feed.write(transaction(1, ts=5, IsRefunded=True))
        stale = feed.write(transaction(2, ts=0, TotalAmount=99.0))
        sale = feed.write(transaction(3, ts=5))
        removal = feed.delete("tx2", ts=6)
        events = [await asyncio.wait_for(subscriber.next_event(), 5) for _ in range(3)]

        assert [(e.position, json.loads(e.data)["kind"]) for e in events] == [
            (refund.lsn, "refund"),
            (sale.lsn, "sale"),
            (removal.lsn, "removal"),
        ]
        assert stale.lsn not in [e.position for e in events]
        assert ids(live._model) == ["tx1", "tx3"]
        assert live._model.get(EventScope.everything(), "tx1")["IsRefunded"] is True
        assert follower.status.position == removal.lsn


async def test_changes_before_catch_up_are_not_replayed_and_the_hub_starts_after_them():
    feed = holding(ListChangeFeed(), [transaction(1)])
    feed.during_load = lambda: feed.write(transaction(2, ts=3))
    async with following(feed) as (live, _):
        # tx1 is at position 1 (loaded), tx2 at 2 (applied by the catch-up pass): the hub starts after 2.
        assert live.hub.subscribe(EVERYONE, after=2).replay == []
        with pytest.raises(Exception, match="no longer buffered"):
            live.hub.subscribe(EVERYONE, after=1)


async def test_a_refused_document_is_logged_with_its_reason_and_the_rest_apply():
    feed = ListChangeFeed()
    async with following(feed) as (live, follower):
        with capture_logs() as logs:
            feed.write({**transaction(1, ts=2), "TotalAmount": "lots"})
            feed.write(transaction(2, ts=2))
            await asyncio.wait_for(follower.next_pass(), 5)
        assert ids(live._model) == ["tx2"]
        refused = [entry for entry in logs if entry["event"] == "transaction refused"]
        assert [(entry["document_id"], entry["reason"].split(":")[0]) for entry in refused] == [
            ("tx1", "TotalAmount")
        ]
        assert follower.status.rejected == 1


async def test_a_failing_feed_is_retried_after_a_backoff_until_it_answers():
    feed = holding(ListChangeFeed(), [transaction(1)])
    feed.failures = 3
    with capture_logs() as logs:
        async with following(feed) as (live, follower):
            assert ids(live._model) == ["tx1"]
            assert follower.status.consecutive_failures == 0
    failures = [entry for entry in logs if entry["event"] == "change feed follower step failed"]
    assert [entry["failures"] for entry in failures] == [1, 2, 3]
    assert [entry["retry_in_seconds"] for entry in failures] == [0.001, 0.002, 0.004]


def test_the_backoff_doubles_up_to_its_bound():
    backoff = Backoff(initial_seconds=0.25, max_seconds=5.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


async def test_not_ready_until_caught_up_with_the_feed():
    feed = ListChangeFeed()
    feed.failures = 1_000_000  # the first pass never completes
    live = LiveUpdates(model=ReadModel(), options=FAST)
    with pytest.raises(ReadSideNotReadyError, match="not started"):
        await live.readiness_check()
    async with live.following(feed=feed) as follower:
        await asyncio.wait_for(follower.wait_until(lambda s: s.loaded and s.consecutive_failures > 0), 5)
        with pytest.raises(ReadSideNotReadyError, match="catching up"):
            await live.readiness_check()
        feed.failures = 0
        await asyncio.wait_for(follower.next_pass(), 5)
        await live.readiness_check()


async def test_not_ready_when_the_feed_has_not_been_read_for_a_while():
    now = [0.0]
    feed = ListChangeFeed()
    follower = ChangeFeedFollower(
        feed=feed,
        model=ReadModel(),
        hub=ChangeHub(),
        poll_seconds=0.01,
        backoff=Backoff(initial_seconds=0.001, max_seconds=0.01),
        stale_after_seconds=10.0,
        clock=lambda: now[0],
    )
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.next_pass(), 5)
        now[0] = 10.0
        await follower.readiness_check()
        feed.failures = 1_000_000
        await asyncio.wait_for(follower.wait_until(lambda s: s.consecutive_failures > 0), 5)
        now[0] = 10.5
        with pytest.raises(ReadSideNotReadyError, match="not been read"):
            await follower.readiness_check()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ShardedFeed(ListChangeFeed):
    """A feed of several ranges: no single start position, and LSNs that go back between ranges."""

    async def start(self):
        start = await super().start()
        return dataclasses.replace(start, lsn=None)

    def write(self, document):
        record = super().write(document)
        self.records[-1] = dataclasses.replace(record, lsn=100 - len(self.records))
        return self.records[-1]


async def test_a_feed_of_several_ranges_gets_ids_of_this_replicas_own():
    feed = ShardedFeed()
    async with following(feed) as (live, _):
        subscriber = live.hub.subscribe(EVERYONE)
        feed.write(transaction(1, ts=2))
        feed.write(transaction(2, ts=2))
        events = [await asyncio.wait_for(subscriber.next_event(), 5) for _ in range(2)]

    assert [(e.position, json.loads(e.data)["id"]) for e in events] == [(1, "tx1"), (2, "tx2")]
    epoch = live.hub.event_id(1).split(".")[0]
    assert live.hub.event_id(2) == f"{epoch}.2"
