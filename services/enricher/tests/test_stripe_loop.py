"""StripeLoop: the Stripe client's requests run on a loop of their own thread, as if awaited here."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from enricher.stripe_loop import StripeLoop

_PRIORITY: contextvars.ContextVar[str] = contextvars.ContextVar("priority", default="unset")


async def test_work_runs_on_the_loops_thread_with_the_callers_context_variables():
    # The rate gate reads the call's priority from context variables the caller set.
    stripe_loop = StripeLoop()

    async def work() -> tuple[int, str]:
        await asyncio.sleep(0)
        return threading.get_ident(), _PRIORITY.get()

    try:
        token = _PRIORITY.set("listing payouts")
        try:
            thread, priority = await stripe_loop.run(work())
        finally:
            _PRIORITY.reset(token)
    finally:
        await stripe_loop.close()
    assert thread != threading.get_ident()
    assert priority == "listing payouts"


async def test_an_error_of_the_work_is_raised_to_the_caller():
    stripe_loop = StripeLoop()

    async def work() -> None:
        raise LookupError("resource_missing")

    try:
        with pytest.raises(LookupError, match="resource_missing"):
            await stripe_loop.run(work())
    finally:
        await stripe_loop.close()


async def test_cancelling_the_caller_cancels_the_work_on_the_loop():
    # A message that stops waiting (its payment was indexed) must not leave its request running.
    stripe_loop = StripeLoop()
    started, cancelled = threading.Event(), threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        caller = asyncio.ensure_future(stripe_loop.run(work()))
        assert await asyncio.to_thread(started.wait, 5)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert await asyncio.to_thread(cancelled.wait, 5)
    finally:
        await stripe_loop.close()


async def test_close_stops_the_loops_thread():
    stripe_loop = StripeLoop(name="stripe-client-under-test")
    await stripe_loop.close()
    await stripe_loop.close()  # a second close does nothing
    assert all(thread.name != "stripe-client-under-test" for thread in threading.enumerate())
