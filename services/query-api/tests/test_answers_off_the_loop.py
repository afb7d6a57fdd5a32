"""Over HTTP and from the change feed: answers wait for a change being applied and then see all of it."""

from __future__ import annotations

import asyncio
import threading

from live_fakes import ListChangeFeed
from query_api_support import bearer, serving, token
from query_documents import transaction

from query_api.follower import Backoff
from query_api.live import LiveUpdateOptions, LiveUpdates
from query_api.readside import ReadSide
from query_api.routes import READ_SIDE
from query_api.scope import EventScope

WAIT_SECONDS = 10.0
"""How long a held thread waits for the test to let it go: a bound, never reached when the code works."""
FAST = LiveUpdateOptions(poll_seconds=0.01, backoff=Backoff(initial_seconds=0.001, max_seconds=0.01))
LATER = 2**40
DATA_ROUTES = (
    "/api/analytics",
    "/api/transactions",
    "/api/transactions/tx1",
    "/api/customers",
    "/api/events",
)


async def started(coroutine) -> asyncio.Task:
    """A task run up to its first wait (a new task runs at the loop's next turn)."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    return task


async def test_requests_during_a_change_wait_for_it_and_the_loop_stays_free():
    async with serving([transaction(1, event="ev1", TotalAmount=10.0)]) as client:
        side = client.app[READ_SIDE]
        entered, release = threading.Event(), threading.Event()

        def slow_change() -> None:
            entered.set()
            release.wait(WAIT_SECONDS)
            # Two steps: an answer between them would see tx1 refunded but no tx2. (The container
            # stamped the loaded copy with the time now: this later copy has a later _ts.)
            side.model.upsert([transaction(1, event="ev1", TotalAmount=10.0, IsRefunded=True, ts=LATER)])
            side.model.upsert([transaction(2, event="ev1", TotalAmount=20.0)])

        change = await started(side.change(slow_change))
        assert await asyncio.to_thread(entered.wait, WAIT_SECONDS)
        analytics = await started(client.get("/api/analytics", headers=bearer(token())))

        # The event loop still answers while the change is applied in its own thread.
        assert (await client.get("/healthz")).status == 200
        assert not analytics.done()
        release.set()
        await asyncio.wait_for(change, WAIT_SECONDS)
        body = await (await analytics).json()
        assert (body["ordersCount"], body["grossRevenue"], body["refundCount"]) == (2, 30.0, 1)


async def test_every_data_route_answers_through_the_answer_threads():
    async with serving([transaction(1, event="ev1")]) as client:
        side = client.app[READ_SIDE]
        entered, release = threading.Event(), threading.Event()
        change = await started(side.change(lambda: (entered.set(), release.wait(WAIT_SECONDS))))
        assert await asyncio.to_thread(entered.wait, WAIT_SECONDS)
        # Each waits for the change being applied: none reads the model beside it.
        requests = [await started(client.get(path, headers=bearer(token()))) for path in DATA_ROUTES]
        assert (await client.get("/healthz")).status == 200
        assert [request.done() for request in requests] == [False] * len(DATA_ROUTES)
        release.set()
        await asyncio.wait_for(change, WAIT_SECONDS)
        statuses = [(await request).status for request in requests]
        assert statuses == [200] * len(DATA_ROUTES)


class AskedChanges:
    """The read side's changes, noting when the follower asks for one (a collaborator, not a patch)."""

    def __init__(self, side: ReadSide) -> None:
        self.side = side
        self.asked = asyncio.Event()

    async def change(self, apply):
        self.asked.set()
        return await self.side.change(apply)


async def test_the_follower_applies_changes_only_when_no_answer_reads():
    side = ReadSide(answer_threads=2)
    feed = ListChangeFeed()
    feed.write(transaction(1))
    changes = AskedChanges(side)
    live = LiveUpdates(model=side.model, options=FAST, changes=changes)
    try:
        async with live.following(feed=feed) as follower:
            await asyncio.wait_for(follower.wait_until(lambda status: status.caught_up), WAIT_SECONDS)
            side.mark_loaded()
            entered, release = threading.Event(), threading.Event()

            def reading(model) -> list[str]:
                entered.set()
                release.wait(WAIT_SECONDS)
                return sorted(model.rows(EventScope.everything())["id"].to_list())

            answer = await started(side.answer(reading))
            assert await asyncio.to_thread(entered.wait, WAIT_SECONDS)
            feed.write(transaction(2, ts=5))
            changes.asked.clear()
            await asyncio.wait_for(changes.asked.wait(), WAIT_SECONDS)

            # The follower has asked to apply a page and waits: the answer still reads the model alone.
            assert len(side.model) == 1
            release.set()
            assert await answer == ["tx1"]
            await asyncio.wait_for(follower.wait_until(lambda status: status.applied >= 1), WAIT_SECONDS)
            assert await side.answer(len) == 2
    finally:
        side.close()
