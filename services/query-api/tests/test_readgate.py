"""The read model's gate: answers share it up to a bound, a change has it alone and goes first."""

from __future__ import annotations

import asyncio

import pytest

from query_api.readgate import ReadWriteGate


async def started(coroutine) -> asyncio.Task:
    """A task run up to its first wait (a new task runs at the loop's next turn)."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    return task


async def test_answers_share_the_model_up_to_the_bound():
    gate = ReadWriteGate(max_readers=2)
    await gate.acquire_read()
    await gate.acquire_read()
    third = await started(gate.acquire_read())

    assert gate.readers == 2
    assert not third.done()
    gate.release_read()
    await asyncio.wait_for(third, 5)
    assert gate.readers == 2


async def test_a_change_waits_for_running_answers_and_new_answers_wait_for_the_change():
    gate = ReadWriteGate(max_readers=4)
    await gate.acquire_read()
    change = await started(gate.acquire_write())
    later_answer = await started(gate.acquire_read())

    # The change waits for the running answer; the answer that came after it waits for the change.
    assert not change.done()
    assert not later_answer.done()
    assert gate.readers == 1
    gate.release_read()
    await asyncio.wait_for(change, 5)
    assert gate.writing
    assert not later_answer.done()
    gate.release_write()
    await asyncio.wait_for(later_answer, 5)
    assert gate.readers == 1
    assert not gate.writing


async def test_a_cancelled_change_lets_waiting_answers_in():
    gate = ReadWriteGate(max_readers=2)
    await gate.acquire_read()
    change = await started(gate.acquire_write())
    answer = await started(gate.acquire_read())
    assert not answer.done()

    change.cancel()
    await asyncio.wait_for(answer, 5)
    assert gate.readers == 2
    assert not gate.writing


async def test_one_change_at_a_time():
    gate = ReadWriteGate(max_readers=1)
    await gate.acquire_write()
    second = await started(gate.acquire_write())
    assert not second.done()
    gate.release_write()
    await asyncio.wait_for(second, 5)
    assert gate.writing


async def test_giving_back_a_pass_not_held_is_an_error():
    gate = ReadWriteGate(max_readers=1)
    with pytest.raises(RuntimeError, match="release_read"):
        gate.release_read()
    with pytest.raises(RuntimeError, match="release_write"):
        gate.release_write()
    with pytest.raises(ValueError, match="max_readers"):
        ReadWriteGate(max_readers=0)
