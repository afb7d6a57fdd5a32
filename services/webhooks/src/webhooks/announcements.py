"""Announcements of concurrent apply workers sent together: one Service Bus batch per turn, not one each.

The Service Bus publisher sends one batch at a time (its sender is not coroutine-safe), and each
send is a round trip plus the SDK's own work; with every apply worker announcing its own change,
the workers queued behind that one sender. Here each ``publish`` joins the messages waiting for
the next send, and returns when the send that carried them succeeded (or raises its error), so
the caller's promise is unchanged: once ``publish`` returns, the messages are on the bus.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from otcommon.bus import PublishError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from otcommon.bus import MessagePublisher
    from otcommon.messages import Envelope, Message

log = structlog.get_logger("webhooks.announcements")


class _Waiting:
    """Messages waiting for the next send, and the callers waiting for it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope[Message]] = []
        self.sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class CoalescingPublisher:
    """A MessagePublisher that sends what its callers publish meanwhile together, through ``inner``."""

    def __init__(self, inner: MessagePublisher) -> None:
        self._inner = inner
        self._waiting: _Waiting | None = None
        self._turn = asyncio.Lock()
        self.sends = 0
        """How many sends ``inner`` was asked for (each carries every message waiting at its turn)."""

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        """Send the messages with whatever else is waiting; the send's error (PublishError) when it failed."""
        batch = list(envelopes)
        if not batch:
            return
        if self._waiting is None:
            self._waiting = _Waiting()
        waiting = self._waiting
        waiting.envelopes.extend(batch)
        async with self._turn:
            if self._waiting is waiting:
                # This caller's turn sends everything gathered while the previous send ran.
                self._waiting = None
                try:
                    await self._inner.publish(waiting.envelopes)
                except Exception as error:  # noqa: BLE001 - every caller of this send gets its error
                    waiting.sent.set_exception(error)
                except asyncio.CancelledError:
                    # The others must not wait forever, nor be cancelled themselves: their apply fails
                    # as a failed publish does, and the event is applied again later.
                    waiting.sent.set_exception(PublishError("the send was cancelled", sent=0))
                    raise
                else:
                    waiting.sent.set_result(None)
                self.sends += 1
        await asyncio.shield(waiting.sent)

    async def close(self) -> None:
        """Close the inner publisher."""
        await self._inner.close()


class HeldPublisher:
    """A MessagePublisher for one worker's batch of events: holds what is published until ``send_held``.

    Applying a batch published each event's messages as it was applied, a send each (shared only
    with the few events applied at the same moment). Held here, the messages of every event applied
    since the last round go in one send, made by the processor just before it settles those events'
    records: an event is still never settled before its messages are on the bus, and still
    announced only after it was claimed (it is applied, and so publishes, only then). Each message
    belongs to the event its ``correlation_id`` names.
    """

    def __init__(self, inner: MessagePublisher) -> None:
        self._inner = inner
        self._held: list[Envelope[Message]] = []

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        """Hold the messages for the next ``send_held`` (nothing is sent here)."""
        self._held.extend(envelopes)

    async def send_held(self) -> set[str]:
        """Send every held message in one send; the ids of the events whose messages it failed to send."""
        taken, self._held = self._held, []
        if not taken:
            return set()
        try:
            await self._inner.publish(taken)
        except Exception:
            log.exception("sending a batch's messages failed", messages=len(taken))
            return {envelope.correlation_id for envelope in taken if envelope.correlation_id is not None}
        return set()

    async def close(self) -> None:
        """Nothing to close: the inner publisher belongs to the service."""
