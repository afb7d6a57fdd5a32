"""The read model as the HTTP layer sees it: answers only once the start-up load has finished."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from otcommon.http import ServiceUnavailableError
from query_api.readmodel import ReadModel

LOADING_RETRY_SECONDS: Final = 5


class ReadModelLoadingError(Exception):
    """The start-up load has not finished: the replica is not ready."""


@dataclass
class ReadSide:
    """The replica's read model and whether its start-up load has finished."""

    model: ReadModel = field(default_factory=ReadModel)
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def loaded(self) -> bool:
        """Whether the start-up load has finished."""
        return self._loaded.is_set()

    def mark_loaded(self) -> None:
        """The start-up load has finished: answer requests, report ready."""
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

    async def readiness_check(self) -> None:
        """For ``/readyz``: fails until the start-up load has finished."""
        if not self.loaded:
            raise ReadModelLoadingError("the read model is still loading")
