"""Live updates wired into the app: the follower runs beside the app, the stream route serves its changes.

``create_app`` builds one :class:`LiveUpdates`, registers its readiness check and stream route,
and enters :meth:`LiveUpdates.following` in a ``cleanup_ctx`` once the Cosmos clients are open.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from query_api.follower import (
    DEFAULT_POLL_SECONDS,
    DEFAULT_STALE_AFTER_SECONDS,
    Backoff,
    ChangeFeedFollower,
    InlineChanges,
    ModelChanges,
    ReadSideNotReadyError,
)
from query_api.hub import DEFAULT_REPLAY_EVENTS, DEFAULT_SUBSCRIBER_QUEUE, ChangeHub
from query_api.stream import add_change_stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aiohttp import web

    from otcommon.http import Principal
    from query_api.changefeed import ChangeFeed
    from query_api.readmodel import ReadModel


@dataclass(frozen=True, slots=True)
class LiveUpdateOptions:
    """The bounds of live updates (the app's settings map onto these)."""

    poll_seconds: float = DEFAULT_POLL_SECONDS
    replay_events: int = DEFAULT_REPLAY_EVENTS
    subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE
    heartbeat_seconds: float = 15.0
    stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS
    backoff: Backoff = field(default_factory=Backoff)


class LiveUpdates:
    """One replica's read model kept current from the change feed, and the hub its stream reads."""

    def __init__(
        self,
        *,
        model: ReadModel,
        options: LiveUpdateOptions | None = None,
        changes: ModelChanges | None = None,
    ) -> None:
        self._model = model
        self._changes = changes or InlineChanges()
        self._options = options or LiveUpdateOptions()
        self.hub = ChangeHub(
            replay_events=self._options.replay_events, subscriber_queue=self._options.subscriber_queue
        )
        self.follower: ChangeFeedFollower | None = None

    async def readiness_check(self) -> None:
        """Raises until the read model is loaded and caught up with the feed (``otcommon.health`` check)."""
        if self.follower is None:
            raise ReadSideNotReadyError("the change feed follower has not started")
        await self.follower.readiness_check()

    def add_stream_route(
        self, app: web.Application, *, authenticate: Callable[[web.Request], Awaitable[Principal]]
    ) -> None:
        """``GET /api/stream`` on this hub, authenticated by the app's own bearer check."""
        add_change_stream(
            app,
            hub=self.hub,
            authenticate=authenticate,
            readiness=self.readiness_check,
            heartbeat_seconds=self._options.heartbeat_seconds,
        )

    @contextlib.asynccontextmanager
    async def following(self, *, feed: ChangeFeed) -> AsyncIterator[ChangeFeedFollower]:
        """Load and follow in a background task while the context is open; stop it at exit."""
        follower = ChangeFeedFollower(
            feed=feed,
            model=self._model,
            changes=self._changes,
            hub=self.hub,
            poll_seconds=self._options.poll_seconds,
            backoff=self._options.backoff,
            stale_after_seconds=self._options.stale_after_seconds,
        )
        self.follower = follower
        task = asyncio.create_task(follower.run(), name="change-feed-follower")
        try:
            yield follower
        finally:
            self.hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
