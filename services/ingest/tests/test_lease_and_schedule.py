"""The sync lease (one replica at a time, takeover after expiry) and NCRONTAB schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ingest_fakes import container

from ingest.lease import LeaseLostError, SyncLease
from ingest.schedule import InvalidScheduleError, Schedule


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases():
    state = container("state")
    clock = Clock()

    def make(holder: str) -> SyncLease:
        return SyncLease(state, name="sync:test", holder=holder, duration_seconds=30, clock=clock)

    return make, clock


async def test_only_one_replica_holds_the_lease(leases):
    make, _ = leases
    a, b = make("a"), make("b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert (await b.state()).holder == "a"
    assert await a.try_acquire()  # re-entrant for its holder


async def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it(leases):
    make, clock = leases
    a, b = make("a"), make("b")
    assert await a.try_acquire()
    clock.now += 31
    assert await b.try_acquire()
    with pytest.raises(LeaseLostError):
        await a.renew()


async def test_renewal_keeps_the_lease_past_its_first_period(leases):
    make, clock = leases
    a, b = make("a"), make("b")
    assert await a.try_acquire()
    clock.now += 20
    await a.renew()
    clock.now += 20
    assert not await b.try_acquire()


async def test_release_frees_the_lease_at_once(leases):
    make, _ = leases
    a, b = make("a"), make("b")
    assert await a.try_acquire()
    await a.release()
    assert (await b.state()).holder is None
    assert await b.try_acquire()


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 0 * * * *", datetime(2026, 1, 1, 10, 30, tzinfo=UTC), datetime(2026, 1, 1, 11, 0, tzinfo=UTC)),
        (
            "*/15 * * * * *",
            datetime(2026, 1, 1, 10, 30, 1, tzinfo=UTC),
            datetime(2026, 1, 1, 10, 30, 15, tzinfo=UTC),
        ),
        ("0 30 9 * * 1-5", datetime(2026, 1, 2, 10, 0, tzinfo=UTC), datetime(2026, 1, 5, 9, 30, tzinfo=UTC)),
    ],
)
def test_ncrontab_next_firing(expression, after, expected):
    assert Schedule.parse(expression).next_after(after) == expected


@pytest.mark.parametrize("expression", ["0 * * * *", "0 0 * * * * *", "61 0 * * * *", "every hour"])
def test_invalid_schedules_are_refused_with_a_hint(expression):
    with pytest.raises(InvalidScheduleError, match="NCRONTAB"):
        Schedule.parse(expression)
