"""Answering apart from applying: recorded events handed from answer processes to apply processes.

With ``OT_WEBHOOKS_APPLY_PROCESSES`` above 0, ``serve`` starts two kinds of process (see
``webhooks/supervisor.py``): answer processes (HTTP: verify, record, answer) and apply processes (the
workers and the sweep), joined by pipes. An answer process writes each event it recorded, and each
redelivery's id, to its apply process as one line of JSON; the apply process queues it for its
workers as if it had recorded the event itself. Apply processes run at a lower CPU priority, so that
when the host's cores are busy the kernel runs the answers first: Stripe's acknowledgements no
longer wait behind applying, on the event loop or for a core.

A handed-over event is recorded already, so nothing is lost when a pipe fills or breaks: the record
stays ``received`` and the sweep applies it, exactly as after a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

import structlog

from webhooks.models import MalformedEventError, StripeEvent
from webhooks.processor import Queued

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

log = structlog.get_logger("webhooks.handoff")

MAX_PENDING_BYTES = 16 * 1024 * 1024
"""Hand-offs an answer process keeps waiting for its pipe before it leaves events to the sweep."""

CLOSE_SECONDS = 10.0
"""How long an answer process, stopping, waits for its apply process to read what it handed over."""

MAX_LINE_BYTES = 8 * 1024 * 1024
"""The longest line an apply process reads: an event's payload (bodies are capped far below)."""


class MalformedHandOffError(Exception):
    """A line on a hand-off pipe that is not a handed-over event."""


def encode(queued: Queued) -> bytes:
    """One hand-off line: the event's id; for a fresh record also its payload, ETag and queue time."""
    line: dict[str, Any] = {"id": queued.event_id}
    if queued.event is not None:
        line |= {"event": queued.event.payload, "etag": queued.etag, "queuedAt": queued.queued_at}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Queued:
    """The queued event a hand-off line carries; MalformedHandOffError when it carries none."""
    try:
        fields = json.loads(line)
    except ValueError as error:
        raise MalformedHandOffError(f"not JSON: {error}") from None
    if not isinstance(fields, dict) or not isinstance(event_id := fields.get("id"), str):
        raise MalformedHandOffError("no event id")
    if "event" not in fields:
        return Queued(event_id)
    etag, queued_at = fields.get("etag"), fields.get("queuedAt")
    if not isinstance(etag, str) or not isinstance(queued_at, int | float):
        raise MalformedHandOffError("a handed-over event needs its record's ETag and queue time")
    try:
        event = StripeEvent.from_payload(fields["event"])
    except MalformedEventError as error:
        raise MalformedHandOffError(str(error)) from None
    if event.id != event_id:
        raise MalformedHandOffError("the event's id differs from the line's")
    # The queue time is the answer process's monotonic clock: Linux's is one clock for the host.
    return Queued(event_id, event, etag, float(queued_at))


class HandOffWriter:
    """The answer process's end of its pipe: ``hand_off(queued)`` writes without waiting."""

    def __init__(self, fd: int, *, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._fd = fd
        self._max_pending = max_pending_bytes
        self._transport: asyncio.WriteTransport | None = None
        self._closed = asyncio.Event()

    async def open(self) -> None:
        """Take the pipe on the running loop."""
        loop = asyncio.get_running_loop()
        closed = self._closed

        class Protocol(asyncio.BaseProtocol):
            def connection_lost(self, exc: Exception | None) -> None:
                if exc is not None:
                    log.error(
                        "hand-off pipe broke; the sweep applies what was not handed over", error=str(exc)
                    )
                closed.set()

        self._transport, _ = await loop.connect_write_pipe(Protocol, os.fdopen(self._fd, "wb", buffering=0))

    def hand_off(self, queued: Queued) -> bool:
        """Write one event to the apply process; False when it cannot go (left to the sweep)."""
        transport = self._transport
        if transport is None or transport.is_closing():  # closing, or the pipe broke
            return False
        if transport.get_write_buffer_size() > self._max_pending:
            return False  # the apply process is far behind: the sweep takes the overflow
        transport.write(encode(queued))
        return True

    async def close(self, *, grace: float = CLOSE_SECONDS) -> None:
        """Close the pipe once what was written has gone (the apply process then sees its end).

        An apply process that reads nothing does not hold the answer process up: after ``grace``
        seconds the pipe is dropped, and what it still held waits, recorded, for the sweep.
        """
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.close()
        try:
            await asyncio.wait_for(self._closed.wait(), grace)
        except TimeoutError:
            log.warning("hand-off pipe not drained; the sweep applies what it held")
            self._transport.abort()


async def receive_hand_offs(fds: Sequence[int], take: Callable[[Queued], Awaitable[None]]) -> int:
    """Read every pipe until each is closed, passing each event to ``take``; how many were taken.

    A malformed line is logged and skipped: it names a recorded event at most, which the sweep applies.
    """
    counts = await asyncio.gather(*(_receive(fd, take) for fd in fds))
    return sum(counts)


async def _receive(fd: int, take: Callable[[Queued], Awaitable[None]]) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    taken = 0
    try:
        while True:
            try:
                line = await reader.readline()
                if not line:
                    break
                queued = decode(line)
            except (MalformedHandOffError, ValueError) as error:  # ValueError: a line over the limit
                log.warning("hand-off line refused; the sweep applies its event", reason=str(error))
                continue
            await take(queued)
            taken += 1
    finally:
        transport.close()
    return taken
