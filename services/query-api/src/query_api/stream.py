"""``GET /api/stream``: applied changes as server-sent events, for the events the caller may see.

Events (``text/event-stream``):
- ``change``: one applied change; ``id`` is its change feed position, the same on every replica;
  ``data`` is JSON ``{kind, id, eventId, changed, transaction}`` (``transaction`` null on removal).
- ``reload``: the ``Last-Event-ID`` asked for is older than this replica's replay buffer, so
  changes may have been missed: reload the data, then carry on from this event's ``id``.
- comments (``: keep-alive``) every ``heartbeat_seconds`` so proxies keep the connection open.
A client that reads too slowly is disconnected; it reconnects with ``Last-Event-ID`` and resumes.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from otcommon.http import InvalidParameterError, ServiceUnavailableError, reject_unknown_parameters
from query_api.follower import ReadSideNotReadyError
from query_api.hub import InvalidEventIdError, ResumeTooOldError, SubscriberDroppedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from otcommon.http import Principal
    from query_api.hub import ChangeEvent, ChangeHub, Subscription

_log = structlog.get_logger(__name__)

LAST_EVENT_ID: Final = "Last-Event-ID"
RECONNECT_MILLISECONDS: Final = 2000
"""The ``retry`` the stream suggests to EventSource clients after a disconnect."""
RELOAD_REASON: Final = "resume point no longer buffered"


def sse_frame(*, data: str, event: str | None = None, event_id: str | None = None) -> bytes:
    """One server-sent event; multi-line data is split into data lines as the format requires."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def resume_point(hub: ChangeHub, value: str | None) -> int | None:
    """The position a client resumes after; a 400 naming the header when no replica gave out that id.

    ResumeTooOldError when the id is another epoch's (see hub.py): the client must reload.
    """
    if value is None or not value.strip():
        return None
    try:
        return hub.position_of(value)
    except InvalidEventIdError as error:
        raise InvalidParameterError(
            LAST_EVENT_ID, "Last-Event-ID must be the id of an event of this stream"
        ) from error


class ChangeStream:
    """The stream handler, over a hub, a readiness check and the app's authentication."""

    def __init__(
        self,
        *,
        hub: ChangeHub,
        authenticate: Callable[[web.Request], Awaitable[Principal]],
        readiness: Callable[[], Awaitable[None]],
        heartbeat_seconds: float,
    ) -> None:
        self._hub = hub
        self._authenticate = authenticate
        self._readiness = readiness
        self._heartbeat_seconds = heartbeat_seconds

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Authenticate, subscribe (resuming if asked), then write events until the client leaves."""
        principal = await self._authenticate(request)
        reject_unknown_parameters(request, frozenset())
        try:
            await self._readiness()
        except ReadSideNotReadyError as error:
            raise ServiceUnavailableError(str(error), retry_after_seconds=1) from error
        last_event_id = request.headers.get(LAST_EVENT_ID)
        reload_from: str | None = None
        try:
            after = resume_point(self._hub, last_event_id)
            subscription = self._hub.subscribe(principal, after=after)
        except ResumeTooOldError:
            reload_from = last_event_id
            subscription = self._hub.subscribe(principal)
        # aiohttp cancels the handler when the client disconnects: that is how most streams end.
        outcome = "cancelled"
        try:
            response = await self._open(request)
            if reload_from is not None:
                await response.write(self._reload_frame(reload_from))
            outcome = await self._pump(response, subscription)
        finally:
            self._hub.unsubscribe(subscription)
            _log.info("stream closed", principal=principal.name, outcome=outcome, resumed_after=last_event_id)
        return response

    async def _open(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-transform",
                # Reverse proxies (nginx ingress) must pass events on at once, not buffer them.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {RECONNECT_MILLISECONDS}\n: connected\n\n".encode())
        return response

    def _change_frame(self, event: ChangeEvent) -> bytes:
        return sse_frame(data=event.data, event="change", event_id=self._hub.event_id(event.position))

    def _reload_frame(self, requested: str) -> bytes:
        newest = self._hub.newest_position
        data = json.dumps({"reason": RELOAD_REASON, "lastEventId": requested})
        event_id = None if newest is None else self._hub.event_id(newest)
        return sse_frame(data=data, event="reload", event_id=event_id)

    async def _pump(self, response: web.StreamResponse, subscription: Subscription) -> str:
        try:
            for event in subscription.replay:
                await response.write(self._change_frame(event))
            while True:
                try:
                    async with asyncio.timeout(self._heartbeat_seconds):
                        event = await subscription.next_event()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(self._change_frame(event))
        except SubscriberDroppedError:
            return "dropped"
        except ConnectionError:
            return "client left"


def add_change_stream(
    app: web.Application,
    *,
    hub: ChangeHub,
    authenticate: Callable[[web.Request], Awaitable[Principal]],
    readiness: Callable[[], Awaitable[None]],
    heartbeat_seconds: float,
) -> None:
    """Route ``GET /api/stream``; open streams end when the app shuts down."""
    stream = ChangeStream(
        hub=hub, authenticate=authenticate, readiness=readiness, heartbeat_seconds=heartbeat_seconds
    )
    app.router.add_get("/api/stream", stream.handle)

    async def end_streams(_: web.Application) -> None:
        hub.close()

    app.on_shutdown.append(end_streams)
