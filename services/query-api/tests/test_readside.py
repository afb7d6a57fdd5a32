"""Answers computed in worker threads beside each other, never while a change is applied."""

from __future__ import annotations

import asyncio
import threading

import pytest
from query_documents import transaction

from otcommon.http import ServiceUnavailableError
from query_api.readside import ReadSide
from query_api.scope import EventScope

WAIT_SECONDS = 10.0
"""How long a held thread waits for the test to let it go: a bound, never reached when the code works."""


def ids(model) -> list[str]:
    return sorted(model.rows(EventScope.everything())["id"].to_list())


async def started(coroutine) -> asyncio.Task:
    """A task run up to its first wait (a new task runs at the loop's next turn)."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    return task


@pytest.fixture
async def side():
    read_side = ReadSide(answer_threads=2)
    read_side.model.upsert([transaction(1)])
    read_side.mark_loaded()
    yield read_side
    read_side.close()


class Held:
    """A piece of work that runs in a worker thread until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, *_: object) -> str:
        self.entered.set()
        self.release.wait(WAIT_SECONDS)
        self.finished.set()
        return "slow"

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT_SECONDS)


async def test_a_slow_answer_does_not_hold_up_a_quick_one(side):
    slow = Held()
    slow_answer = await started(side.answer(slow))
    await slow.wait_entered()

    quick = await asyncio.wait_for(side.answer(ids), WAIT_SECONDS)

    # The quick answer came while the slow one was still computing in the other thread.
    assert quick == ["tx1"]
    assert not slow.finished.is_set()
    slow.release.set()
    assert await slow_answer == "slow"


async def test_answers_do_not_run_on_the_event_loop(side):
    loop_thread = threading.get_ident()
    assert await side.answer(lambda _: threading.get_ident()) != loop_thread


async def test_a_change_waits_for_running_answers_and_later_answers_see_it(side):
    reading = Held()
    answer = await started(side.answer(reading))
    await reading.wait_entered()
    applied = threading.Event()

    def apply() -> None:
        assert reading.finished.is_set(), "a change ran while an answer was reading"
        side.model.upsert([transaction(2)])
        applied.set()

    change = await started(side.change(apply))
    later = await started(side.answer(ids))
    assert not applied.is_set()
    assert not later.done()

    reading.release.set()
    await asyncio.wait_for(change, WAIT_SECONDS)
    assert await answer == "slow"
    assert await asyncio.wait_for(later, WAIT_SECONDS) == ["tx1", "tx2"]


async def test_a_cancelled_answer_keeps_the_model_until_its_thread_ends(side):
    reading = Held()
    answer = await started(side.answer(reading))
    await reading.wait_entered()
    answer.cancel()
    applied = threading.Event()

    def apply() -> None:
        assert reading.finished.is_set(), "a change ran while a cancelled answer's thread was reading"
        applied.set()

    change = await started(side.change(apply))
    assert not applied.is_set()
    reading.release.set()
    await asyncio.wait_for(change, WAIT_SECONDS)
    assert applied.is_set()
    with pytest.raises(asyncio.CancelledError):
        await answer


async def test_an_answer_that_fails_gives_back_its_pass(side):
    def failing(_: object) -> None:
        raise LookupError("no such thing")

    with pytest.raises(LookupError, match="no such thing"):
        await side.answer(failing)
    await asyncio.wait_for(side.change(lambda: side.model.upsert([transaction(3)])), WAIT_SECONDS)
    assert await side.answer(ids) == ["tx1", "tx3"]


async def test_no_answer_while_loading():
    loading = ReadSide()
    try:
        with pytest.raises(ServiceUnavailableError):
            await loading.answer(ids)
    finally:
        loading.close()
