"""An event loop on a thread of its own, where the Stripe client sends its requests and reads the answers.

The rate gate frees a slot one second after each answer is seen (``enricher.throttle``), so the
rate the enricher reaches depends on how soon answers are seen and waiting requests sent. On the
main loop, busy with thousands of messages in a cold start, each of those steps waited behind the
messages' work: seconds went by with 10 to 17 calls answered instead of 25, and the last call came
2.5 s late. On a loop of its own the client waits only for the interpreter's lock, which a busy
thread gives up every few milliseconds. The work stays where it was: the messages run on the main
loop; the requests, their throttling and the decoding of their answers here.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

_T = TypeVar("_T")


class StripeLoop:
    """Runs coroutines on an event loop of its own thread; ``close`` stops it."""

    def __init__(self, *, name: str = "stripe-client") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """``work``'s result, run on this loop (the caller's context variables go with it).

        Cancelling the caller cancels ``work`` there.
        """
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def close(self) -> None:
        """Stop the loop once what runs on it now has ended, and wait for its thread."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()
