"""SingleFlight: one refresh per key, shared by every waiter, whatever each waiter does."""

from __future__ import annotations

import asyncio

from enricher.indexer import SingleFlight


class Listing:
    """A refresh that runs until released, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None

    async def __call__(self) -> None:
        self.runs += 1
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with


async def started(flights: SingleFlight, key: str, listing: Listing, count: int) -> list[asyncio.Task[None]]:
    waiters = [asyncio.ensure_future(flights.run(key, listing)) for _ in range(count)]
    while not (flights.running(key) and listing.runs):
        await asyncio.sleep(0)
    return waiters


async def test_waiters_arriving_meanwhile_share_one_run():
    flights, listing = SingleFlight(), Listing()
    waiters = await started(flights, "charges:platform", listing, 50)

    listing.release.set()
    await asyncio.gather(*waiters)

    assert listing.runs == 1
    assert not flights.running("charges:platform")


async def test_a_waiter_that_stops_waiting_leaves_the_run_and_the_other_waiters_alone():
    flights, listing = SingleFlight(), Listing()
    leaving, *staying = await started(flights, "charges:acct_1", listing, 3)

    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    assert flights.running("charges:acct_1")
    listing.release.set()
    await asyncio.gather(*staying)

    assert leaving.cancelled()
    assert listing.runs == 1


async def test_a_failed_run_fails_every_waiter_and_the_next_call_runs_again():
    flights, listing = SingleFlight(), Listing()
    listing.fail_with = RuntimeError("listing failed")
    waiters = await started(flights, "charges:acct_2", listing, 3)

    listing.release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)

    assert [str(outcome) for outcome in outcomes] == ["listing failed"] * 3
    listing.fail_with = None
    await flights.run("charges:acct_2", listing)
    assert listing.runs == 2


async def test_wait_running_waits_for_the_runs_of_a_prefix():
    flights, listing, other = SingleFlight(), Listing(), Listing()
    await started(flights, "charges:acct_3", listing, 1)
    await started(flights, "payouts:acct_3", other, 1)
    waiting = asyncio.ensure_future(flights.wait_running("charges:"))
    await asyncio.sleep(0)  # one turn of the loop: the wait has begun
    assert not waiting.done()

    listing.release.set()
    await asyncio.wait_for(waiting, timeout=5)

    assert flights.running("payouts:acct_3")  # another prefix: not waited for
    other.release.set()
    await flights.run("payouts:acct_3", other)  # joins the run in flight
    assert other.runs == 1


async def test_waiting_for_the_runs_in_flight_when_one_ends_before_the_wait_begins():
    flights, listing = SingleFlight(), Listing()
    waiters = await started(flights, "charges:acct_4", listing, 1)
    listing.release.set()  # the run ends on the next turn, before the wait below gets to its waiters

    waiting = asyncio.ensure_future(flights.wait_running("charges:"))
    await asyncio.gather(*waiters)
    await waiting

    assert not flights.running("charges:acct_4")


async def test_wait_running_for_a_run_that_ends_before_the_wait_begins():
    flights, listing = SingleFlight(), Listing()
    await started(flights, "charges:acct_4", listing, 1)
    listing.release.set()
    await asyncio.sleep(0)  # the run's coroutine has returned; its task's ending is still to be handled
    assert flights.running("charges:acct_4")

    await flights.wait_running("charges:")  # awaited at once: a task around it would start too late

    assert not flights.running("charges:acct_4")
