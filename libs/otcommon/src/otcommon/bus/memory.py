"""An in-memory bus with Service Bus queue semantics, for unit tests of services and of the consumer.

Modelled: peek-lock with a lock duration, delivery count, abandon and lock expiry redelivery, dead-lettering
(explicit, and past the max delivery count), scheduled messages, duplicate detection by message id within
a window. Not modelled: sessions, topics, message expiry, ordering guarantees beyond FIFO of visible
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otcommon.bus.errors import SettlementError
from otcommon.bus.interface import DeadLetteredMessage
from otcommon.messages import RawMessage, encode_envelope

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from otcommon.messages import Envelope, Message

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


@dataclass(kw_only=True)
class _Stored:
    raw: RawMessage
    sequence_number: int
    visible_at: float
    delivery_count: int = 0
    lock_token: int | None = None
    locked_until: float = 0.0


@dataclass(kw_only=True)
class _Queue:
    messages: dict[int, _Stored] = field(default_factory=dict)
    dead_letters: list[DeadLetteredMessage] = field(default_factory=list)
    seen_message_ids: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    dead_lettered: asyncio.Event = field(default_factory=asyncio.Event)


class InMemoryBus:
    """Named queues held in memory; hands out publishers and sources that implement the bus Protocols."""

    def __init__(
        self,
        *,
        lock_duration_seconds: float = 30.0,
        max_delivery_count: int = 10,
        duplicate_detection_window_seconds: float | None = 600.0,
    ) -> None:
        self.lock_duration_seconds = lock_duration_seconds
        self.max_delivery_count = max_delivery_count
        self.duplicate_detection_window_seconds = duplicate_detection_window_seconds
        self._queues: dict[str, _Queue] = {}
        self._sequence = itertools.count(1)

    def publisher(self, *, queue: str) -> InMemoryPublisher:
        """A publisher to `queue`."""
        return InMemoryPublisher(bus=self, queue=queue)

    def source(self, *, queue: str) -> InMemorySource:
        """A receiver on `queue`."""
        return InMemorySource(bus=self, queue=queue)

    def send_raw(self, *, queue: str, message: RawMessage, delay_seconds: float = 0.0) -> None:
        """Enqueue a wire-form message as a sender would (duplicate detection applies); call within a loop."""
        state = self._queue(queue)
        now = _now()
        window = self.duplicate_detection_window_seconds
        if window is not None and message.message_id is not None:
            # Like Service Bus, a duplicate is accepted by the send and silently dropped.
            seen_at = state.seen_message_ids.get(message.message_id)
            if seen_at is not None and now - seen_at < window:
                return
            state.seen_message_ids[message.message_id] = now
        sequence_number = next(self._sequence)
        state.messages[sequence_number] = _Stored(
            raw=message, sequence_number=sequence_number, visible_at=now + delay_seconds
        )
        state.changed.set()

    def active_messages(self, *, queue: str) -> list[RawMessage]:
        """Messages not yet completed or dead-lettered (visible, locked or scheduled)."""
        return [stored.raw for stored in self._queue(queue).messages.values()]

    def dead_letters(self, *, queue: str) -> list[DeadLetteredMessage]:
        """The dead-letter queue of `queue`, oldest first."""
        return list(self._queue(queue).dead_letters)

    async def wait_for_dead_letters(self, *, queue: str, count: int) -> list[DeadLetteredMessage]:
        """The first `count` dead letters of `queue`, once there are that many (bound it with a timeout)."""
        state = self._queue(queue)
        while len(state.dead_letters) < count:
            state.dead_lettered.clear()
            await state.dead_lettered.wait()
        return state.dead_letters[:count]

    async def _receive(
        self, *, queue: str, max_messages: int, max_wait_seconds: float
    ) -> list[_InMemoryReceived]:
        state = self._queue(queue)
        deadline = _now() + max_wait_seconds
        while True:
            received = self._take(state, queue=queue, max_messages=max_messages)
            if received:
                return received
            now = _now()
            if now >= deadline:
                return []
            # No await between the empty take and clear(), so no change can slip in unnoticed.
            state.changed.clear()
            wake_at = min(deadline, self._next_change(state, now=now))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake_at - now, 0.0)):
                    await state.changed.wait()

    def _take(self, state: _Queue, *, queue: str, max_messages: int) -> list[_InMemoryReceived]:
        now = _now()
        taken: list[_InMemoryReceived] = []
        for stored in list(state.messages.values()):
            if len(taken) >= max_messages:
                break
            if stored.lock_token is not None:
                if stored.locked_until > now:
                    continue
                # An expired lock counts as an abandon.
                stored.lock_token = None
                if self._dead_letter_if_exhausted(state, stored):
                    continue
            if stored.visible_at > now:
                continue
            stored.delivery_count += 1
            stored.lock_token = next(self._sequence)
            stored.locked_until = now + self.lock_duration_seconds
            taken.append(
                _InMemoryReceived(
                    bus=self,
                    queue=queue,
                    sequence_number=stored.sequence_number,
                    lock_token=stored.lock_token,
                    raw=stored.raw,
                    delivery_count=stored.delivery_count,
                )
            )
        return taken

    @staticmethod
    def _next_change(state: _Queue, *, now: float) -> float:
        times = [
            stored.locked_until if stored.lock_token is not None else stored.visible_at
            for stored in state.messages.values()
        ]
        return min((time for time in times if time > now), default=float("inf"))

    def _dead_letter_if_exhausted(self, state: _Queue, stored: _Stored) -> bool:
        if stored.delivery_count < self.max_delivery_count:
            return False
        self._move_to_dead_letters(
            state,
            stored,
            reason=MAX_DELIVERY_COUNT_EXCEEDED,
            description=f"delivered {stored.delivery_count} times",
        )
        return True

    @staticmethod
    def _move_to_dead_letters(state: _Queue, stored: _Stored, *, reason: str, description: str) -> None:
        del state.messages[stored.sequence_number]
        state.dead_letters.append(
            DeadLetteredMessage(
                raw=stored.raw, reason=reason, description=description, delivery_count=stored.delivery_count
            )
        )
        state.dead_lettered.set()

    def _locked(self, *, queue: str, sequence_number: int, lock_token: int, action: str) -> _Stored:
        stored = self._queue(queue).messages.get(sequence_number)
        if stored is None or stored.lock_token != lock_token or stored.locked_until <= _now():
            raise SettlementError(f"cannot {action}: the lock was lost or the message was already settled")
        return stored

    def _settle(self, received: _InMemoryReceived, *, action: str) -> _Stored:
        return self._locked(
            queue=received.queue,
            sequence_number=received.sequence_number,
            lock_token=received.lock_token,
            action=action,
        )

    def _queue(self, name: str) -> _Queue:
        return self._queues.setdefault(name, _Queue())


@dataclass(kw_only=True)
class _InMemoryReceived:
    bus: InMemoryBus
    queue: str
    sequence_number: int
    lock_token: int
    raw: RawMessage
    delivery_count: int

    async def complete(self) -> None:
        stored = self.bus._settle(self, action="complete")  # noqa: SLF001  # the bus and its handles are one unit
        state = self.bus._queue(self.queue)  # noqa: SLF001
        del state.messages[stored.sequence_number]
        state.changed.set()

    async def abandon(self) -> None:
        stored = self.bus._settle(self, action="abandon")  # noqa: SLF001
        state = self.bus._queue(self.queue)  # noqa: SLF001
        stored.lock_token = None
        stored.visible_at = _now()
        self.bus._dead_letter_if_exhausted(state, stored)  # noqa: SLF001
        state.changed.set()

    async def dead_letter(self, *, reason: str, description: str) -> None:
        stored = self.bus._settle(self, action="dead-letter")  # noqa: SLF001
        state = self.bus._queue(self.queue)  # noqa: SLF001
        self.bus._move_to_dead_letters(state, stored, reason=reason, description=description)  # noqa: SLF001
        state.changed.set()

    async def reschedule(self, *, copy: RawMessage, delay_seconds: float) -> None:
        # Check the lock first so a lost lock does not leave both the copy and a redelivery behind.
        self.bus._settle(self, action="reschedule")  # noqa: SLF001
        self.bus.send_raw(queue=self.queue, message=copy, delay_seconds=delay_seconds)
        await self.complete()


class InMemoryPublisher:
    """A MessagePublisher onto an InMemoryBus queue."""

    def __init__(self, *, bus: InMemoryBus, queue: str) -> None:
        self._bus = bus
        self._queue = queue

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        """Enqueue the messages."""
        for envelope in envelopes:
            self._bus.send_raw(queue=self._queue, message=encode_envelope(envelope))

    async def close(self) -> None:
        """Nothing to release."""


class InMemorySource:
    """A MessageSource over an InMemoryBus queue."""

    def __init__(self, *, bus: InMemoryBus, queue: str) -> None:
        self._bus = bus
        self._queue = queue
        self._closed = False

    async def receive(self, *, max_messages: int, max_wait_seconds: float) -> Sequence[_InMemoryReceived]:
        """Lock and return up to `max_messages` visible messages, waiting up to `max_wait_seconds`."""
        if self._closed:
            raise RuntimeError("source is closed")
        return await self._bus._receive(  # noqa: SLF001
            queue=self._queue, max_messages=max_messages, max_wait_seconds=max_wait_seconds
        )

    async def close(self) -> None:
        """Stop receiving; unsettled messages return to the queue when their lock expires."""
        self._closed = True


def _now() -> float:
    return asyncio.get_running_loop().time()
