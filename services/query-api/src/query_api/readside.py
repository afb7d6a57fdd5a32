"""The read model as the HTTP layer sees it: answers only once loaded, computed off the event loop.

Answers run in a small pool of worker threads (``answer_threads``): Polars releases the GIL while it
scans, so a second core is used and a slow answer does not hold up quick ones behind it on the
event loop. Changes from the change feed run in a thread of their own while no answer runs
(``readgate.ReadWriteGate``), so every answer reads one state of the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

from otcommon.http import ServiceUnavailableError
from query_api.readgate import ReadWriteGate
from query_api.readmodel import ReadModel

if TYPE_CHECKING:
    from collections.abc import Callable

LOADING_RETRY_SECONDS: Final = 5
DEFAULT_ANSWER_THREADS: Final = 2
"""One per core of the 2-core nodes: Polars' own threads share the same cores (see DESIGN.md)."""

_T = TypeVar("_T")


class ReadModelLoadingError(Exception):
    """The start-up load has not finished: the replica is not ready."""


@dataclass
class ReadSide:
    """The replica's read model, whether its start-up load has finished, and who may use it when."""

    model: ReadModel = field(default_factory=ReadModel)
    answer_threads: int = DEFAULT_ANSWER_THREADS
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)
    _gate: ReadWriteGate = field(init=False)
    _answers: ThreadPoolExecutor = field(init=False)
    _changes: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._gate = ReadWriteGate(max_readers=self.answer_threads)
        self._answers = ThreadPoolExecutor(self.answer_threads, thread_name_prefix="query-answer")
        self._changes = ThreadPoolExecutor(1, thread_name_prefix="query-change")

    @property
    def loaded(self) -> bool:
        """Whether the start-up load has finished."""
        return self._loaded.is_set()

    def mark_loaded(self) -> None:
        """The start-up load has finished: answer requests, report ready."""
        # Made here, on the loop, before answers run side by side: never twice by two threads.
        self.model.rollups()
        self._loaded.set()

    async def wait_loaded(self) -> None:
        """Return once the start-up load has finished (what follows the change feed waits for it)."""
        await self._loaded.wait()

    def ready_model(self) -> ReadModel:
        """The read model; a 503 while it is still loading (a partial answer would be a wrong one)."""
        if not self.loaded:
            raise ServiceUnavailableError(
                "the read model is still loading; try again shortly",
                title="Loading",
                retry_after_seconds=LOADING_RETRY_SECONDS,
            )
        return self.model

    async def answer(self, compute: Callable[[ReadModel], _T]) -> _T:
        """``compute(model)`` in an answer thread, beside other answers and while no change is applied.

        A 503 while loading. The shared pass is given back when the thread finishes, even if the
        request was cancelled meanwhile: a change never starts under a running answer.
        """
        model = self.ready_model()
        gate = self._gate
        await gate.acquire_read()
        return await self._run(self._answers, lambda: compute(model), release=gate.release_read)

    async def change(self, apply: Callable[[], _T]) -> _T:
        """``apply()`` (a change to the model) in the change thread, while no answer runs."""
        gate = self._gate
        await gate.acquire_write()
        return await self._run(self._changes, apply, release=gate.release_write)

    def close(self) -> None:
        """Stop taking work; threads still running finish on their own (at shutdown)."""
        self._answers.shutdown(wait=False, cancel_futures=True)
        self._changes.shutdown(wait=False, cancel_futures=True)

    async def readiness_check(self) -> None:
        """For ``/readyz``: fails until the start-up load has finished."""
        if not self.loaded:
            raise ReadModelLoadingError("the read model is still loading")

    @staticmethod
    async def _run(pool: ThreadPoolExecutor, work: Callable[[], _T], *, release: Callable[[], None]) -> _T:
        """``work()`` in ``pool``; ``release()`` on the loop once it has run (or was cancelled unstarted)."""
        loop = asyncio.get_running_loop()

        def finished(_: Future[_T]) -> None:
            # The loop is closed only at shutdown, when no pass matters any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(release)

        try:
            running = pool.submit(work)
        except BaseException:
            release()
            raise
        running.add_done_callback(finished)
        return await asyncio.wrap_future(running)
