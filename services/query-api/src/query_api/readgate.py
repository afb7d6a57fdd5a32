"""Who may use the read model at once: several answers side by side, or one change alone.

Answers run in worker threads while the change feed follower replaces rows, and a change rebuilds
the model's chunks and invalidates its caches in several steps: an answer that read half-way
through one would mix two states. So answers hold a shared pass and a change holds the model
alone. Passes are counted on the event loop (no thread takes them), and each is given back by a
plain call, never an ``await``, so a cancelled request cannot keep one.

Changes go first: once a change waits, no new answer starts, so a change waits at most for the
answers already running (at most ``max_readers``, one per worker thread), never for a queue of them.
That keeps the change feed's 2-second bound under any load.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class ReadWriteGate:
    """Up to ``max_readers`` shared passes, or one exclusive pass; a waiting writer goes first."""

    def __init__(self, *, max_readers: int) -> None:
        if max_readers < 1:
            raise ValueError("max_readers must be at least 1")
        self._max_readers = max_readers
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def readers(self) -> int:
        """Shared passes held now."""
        return self._readers

    @property
    def writing(self) -> bool:
        """Whether the exclusive pass is held."""
        return self._writing

    async def acquire_read(self) -> None:
        """Wait for a shared pass; give it back with :meth:`release_read`."""
        await self._wait_until(
            lambda: not self._writing and not self._writers_waiting and self._readers < self._max_readers
        )
        self._readers += 1

    def release_read(self) -> None:
        """Give back a shared pass (on the event loop's thread)."""
        if self._readers < 1:
            raise RuntimeError("release_read without a shared pass")
        self._readers -= 1
        self._wake()

    async def acquire_write(self) -> None:
        """Wait for the exclusive pass: no answer runs until :meth:`release_write`."""
        self._writers_waiting += 1
        try:
            await self._wait_until(lambda: not self._writing and self._readers == 0)
        finally:
            self._writers_waiting -= 1
            self._wake()  # a cancelled writer must not keep answers waiting
        self._writing = True

    def release_write(self) -> None:
        """Give back the exclusive pass (on the event loop's thread)."""
        if not self._writing:
            raise RuntimeError("release_write without the exclusive pass")
        self._writing = False
        self._wake()

    async def _wait_until(self, admitted: Callable[[], bool]) -> None:
        # The check and the caller's claim happen with no await between them: atomic on the loop.
        while not admitted():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):  # already taken off by _wake
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Every waiter checks again (few wait: at most the requests in flight)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
