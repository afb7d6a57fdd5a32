"""An in-memory bus with Service Bus semantics, for unit tests of services and of the consumer.

Modelled: queues, and topics fanning out to subscriptions through their rules (see `topology`); peek-lock
with a lock duration, delivery count, abandon and lock expiry redelivery, dead-lettering (explicit, and past
the max delivery count), scheduled messages, duplicate detection by message id within a window (per queue,
per topic). Not modelled: sessions, SQL filters and rule actions, message expiry, ordering guarantees beyond
FIFO of visible messages. A message scheduled on a topic is routed to its subscriptions when it is sent,
not when it becomes visible (the rules see the same message either way).

Time comes from `clock` (the event loop's clock unless given), so tests move it instead of sleeping. A
receive waits at most `max_wait_seconds` of real time whichever clock is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otcommon.bus.errors import SettlementError
from otcommon.bus.interface import DeadLetteredMessage
from otcommon.bus.routing import address_retry
from otcommon.messages import RawMessage, encode_envelope

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from otcommon.bus.topology import Subscription, Topic
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
class _Entity:
    """A queue or a subscription: somewhere messages wait for a receiver."""

    messages: dict[int, _Stored] = field(default_factory=dict)
    dead_letters: list[DeadLetteredMessage] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    dead_lettered: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(kw_only=True)
class _Topic:
    subscriptions: list[tuple[Subscription, _Entity]]
    seen_message_ids: dict[str, float] = field(default_factory=dict)


class InMemoryBus:
    """Queues (created on first use) and declared topics held in memory.

    Hands out publishers and sources that implement the bus Protocols.
    """

    def __init__(
        self,
        *,
        lock_duration_seconds: float = 30.0,
        max_delivery_count: int = 10,
        duplicate_detection_window_seconds: float | None = 600.0,
        topics: Iterable[Topic] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.lock_duration_seconds = lock_duration_seconds
        self.max_delivery_count = max_delivery_count
        self.duplicate_detection_window_seconds = duplicate_detection_window_seconds
        self._clock = clock
        self._queues: dict[str, _Entity] = {}
        self._queue_seen_ids: dict[str, dict[str, float]] = {}
        self._topics: dict[str, _Topic] = {
            topic.name: _Topic(
                subscriptions=[(subscription, _Entity()) for subscription in topic.subscriptions]
            )
            for topic in topics
        }
        self._sequence = itertools.count(1)

    # Publishers and sources ---------------------------------------------------------------------------

    def publisher(self, *, queue: str) -> InMemoryPublisher:
        """A publisher to `queue`."""
        return InMemoryPublisher(send=lambda raw: self.send_raw(queue=queue, message=raw))

    def source(self, *, queue: str) -> InMemorySource:
        """A receiver on `queue`; its retries go back to `queue`."""
        return InMemorySource(
            bus=self,
            entity=self._queue(queue),
            resend=lambda copy, delay: self.send_raw(queue=queue, message=copy, delay_seconds=delay),
        )

    def topic_publisher(self, *, topic: str) -> InMemoryPublisher:
        """A publisher to a declared topic."""
        self._topic(topic)
        return InMemoryPublisher(send=lambda raw: self.send_raw_to_topic(topic=topic, message=raw))

    def subscription_source(self, *, topic: str, subscription: str) -> InMemorySource:
        """A receiver on a declared subscription; its retries go to the topic addressed to it alone."""

        def resend(copy: RawMessage, delay_seconds: float) -> None:
            addressed = address_retry(copy, subscription=subscription)
            self.send_raw_to_topic(topic=topic, message=addressed, delay_seconds=delay_seconds)

        return InMemorySource(bus=self, entity=self._subscription(topic, subscription), resend=resend)

    # Sending ------------------------------------------------------------------------------------------

    def send_raw(self, *, queue: str, message: RawMessage, delay_seconds: float = 0.0) -> None:
        """Enqueue a wire-form message as a sender would (duplicate detection applies); call within a loop."""
        seen = self._queue_seen_ids.setdefault(queue, {})
        if self._is_duplicate(seen, message):
            return
        self._enqueue(self._queue(queue), message, delay_seconds=delay_seconds)

    def send_raw_to_topic(self, *, topic: str, message: RawMessage, delay_seconds: float = 0.0) -> None:
        """Send a wire-form message to a topic: each subscription whose rules take it gets a copy."""
        state = self._topic(topic)
        if self._is_duplicate(state.seen_message_ids, message):
            return
        for subscription, entity in state.subscriptions:
            if subscription.takes(message):
                self._enqueue(entity, message, delay_seconds=delay_seconds)

    def _is_duplicate(self, seen: dict[str, float], message: RawMessage) -> bool:
        window = self.duplicate_detection_window_seconds
        if window is None or message.message_id is None:
            return False
        now = self._now()
        seen_at = seen.get(message.message_id)
        if seen_at is not None and now - seen_at < window:
            # Like Service Bus, a duplicate is accepted by the send and silently dropped.
            return True
        seen[message.message_id] = now
        return False

    def _enqueue(self, entity: _Entity, message: RawMessage, *, delay_seconds: float) -> None:
        sequence_number = next(self._sequence)
        entity.messages[sequence_number] = _Stored(
            raw=message, sequence_number=sequence_number, visible_at=self._now() + delay_seconds
        )
        entity.changed.set()

    # Inspection ---------------------------------------------------------------------------------------

    def active_messages(
        self, *, queue: str | None = None, topic: str | None = None, subscription: str | None = None
    ) -> list[RawMessage]:
        """Messages of a queue or subscription not completed or dead-lettered (visible, locked, scheduled)."""
        entity = self._entity(queue=queue, topic=topic, subscription=subscription)
        return [stored.raw for stored in entity.messages.values()]

    def dead_letters(
        self, *, queue: str | None = None, topic: str | None = None, subscription: str | None = None
    ) -> list[DeadLetteredMessage]:
        """The dead-letter queue of a queue or subscription, oldest first."""
        return list(self._entity(queue=queue, topic=topic, subscription=subscription).dead_letters)

    async def wait_for_dead_letters(
        self,
        *,
        count: int,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
    ) -> list[DeadLetteredMessage]:
        """The first `count` dead letters of a queue or subscription, once there are that many.

        Bound the wait with a timeout.
        """
        entity = self._entity(queue=queue, topic=topic, subscription=subscription)
        while len(entity.dead_letters) < count:
            entity.dead_lettered.clear()
            await entity.dead_lettered.wait()
        return entity.dead_letters[:count]

    # Receiving and settling ---------------------------------------------------------------------------

    async def _receive(
        self, entity: _Entity, *, max_messages: int, max_wait_seconds: float
    ) -> list[tuple[_Stored, int]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_seconds
        while True:
            taken = self._take(entity, max_messages=max_messages)
            if taken:
                return taken
            waited = loop.time()
            if waited >= deadline:
                return []
            # No await between the empty take and clear(), so no change can slip in unnoticed.
            entity.changed.clear()
            now = self._now()
            wake_in = min(deadline - waited, self._next_change(entity, now=now) - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake_in, 0.0)):
                    await entity.changed.wait()

    def _take(self, entity: _Entity, *, max_messages: int) -> list[tuple[_Stored, int]]:
        """Lock up to `max_messages` visible messages; each with its new lock token."""
        now = self._now()
        taken: list[tuple[_Stored, int]] = []
        for stored in list(entity.messages.values()):
            if len(taken) >= max_messages:
                break
            if stored.lock_token is not None:
                if stored.locked_until > now:
                    continue
                # An expired lock counts as an abandon.
                stored.lock_token = None
                if self._dead_letter_if_exhausted(entity, stored):
                    continue
            if stored.visible_at > now:
                continue
            stored.delivery_count += 1
            stored.lock_token = lock_token = next(self._sequence)
            stored.locked_until = now + self.lock_duration_seconds
            taken.append((stored, lock_token))
        return taken

    @staticmethod
    def _next_change(entity: _Entity, *, now: float) -> float:
        times = [
            stored.locked_until if stored.lock_token is not None else stored.visible_at
            for stored in entity.messages.values()
        ]
        return min((time for time in times if time > now), default=float("inf"))

    def _dead_letter_if_exhausted(self, entity: _Entity, stored: _Stored) -> bool:
        if stored.delivery_count < self.max_delivery_count:
            return False
        self._move_to_dead_letters(
            entity,
            stored,
            reason=MAX_DELIVERY_COUNT_EXCEEDED,
            description=f"delivered {stored.delivery_count} times",
        )
        return True

    @staticmethod
    def _move_to_dead_letters(entity: _Entity, stored: _Stored, *, reason: str, description: str) -> None:
        del entity.messages[stored.sequence_number]
        entity.dead_letters.append(
            DeadLetteredMessage(
                raw=stored.raw, reason=reason, description=description, delivery_count=stored.delivery_count
            )
        )
        entity.dead_lettered.set()
        entity.changed.set()

    def _locked(self, entity: _Entity, *, sequence_number: int, lock_token: int, action: str) -> _Stored:
        stored = entity.messages.get(sequence_number)
        if stored is None or stored.lock_token != lock_token or stored.locked_until <= self._now():
            raise SettlementError(f"cannot {action}: the lock was lost or the message was already settled")
        return stored

    def _complete(self, entity: _Entity, stored: _Stored) -> None:
        del entity.messages[stored.sequence_number]
        entity.changed.set()

    def _abandon(self, entity: _Entity, stored: _Stored) -> None:
        stored.lock_token = None
        stored.visible_at = self._now()
        self._dead_letter_if_exhausted(entity, stored)
        entity.changed.set()

    # Entities -----------------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _queue(self, name: str) -> _Entity:
        return self._queues.setdefault(name, _Entity())

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise ValueError(f"topic {name!r} is not declared (pass it in InMemoryBus(topics=...))")
        return topic

    def _subscription(self, topic: str, name: str) -> _Entity:
        for subscription, entity in self._topic(topic).subscriptions:
            if subscription.name == name:
                return entity
        raise ValueError(f"topic {topic!r} has no subscription {name!r}")

    def _entity(self, *, queue: str | None, topic: str | None, subscription: str | None) -> _Entity:
        if queue is not None and topic is None and subscription is None:
            return self._queue(queue)
        if queue is None and topic is not None and subscription is not None:
            return self._subscription(topic, subscription)
        raise ValueError("name a queue, or a topic and one of its subscriptions")


@dataclass(kw_only=True)
class _InMemoryReceived:
    bus: InMemoryBus
    entity: _Entity
    resend: Callable[[RawMessage, float], None]
    sequence_number: int
    lock_token: int
    raw: RawMessage
    delivery_count: int

    def _held(self, action: str) -> _Stored:
        return self.bus._locked(  # noqa: SLF001  # the bus and its handles are one unit
            self.entity, sequence_number=self.sequence_number, lock_token=self.lock_token, action=action
        )

    async def complete(self) -> None:
        self.bus._complete(self.entity, self._held("complete"))  # noqa: SLF001

    async def abandon(self) -> None:
        self.bus._abandon(self.entity, self._held("abandon"))  # noqa: SLF001

    async def dead_letter(self, *, reason: str, description: str) -> None:
        stored = self._held("dead-letter")
        self.bus._move_to_dead_letters(self.entity, stored, reason=reason, description=description)  # noqa: SLF001

    async def reschedule(self, *, copy: RawMessage, delay_seconds: float) -> None:
        # Check the lock first so a lost lock does not leave both the copy and a redelivery behind.
        stored = self._held("reschedule")
        self.resend(copy, delay_seconds)
        self.bus._complete(self.entity, stored)  # noqa: SLF001


class InMemoryPublisher:
    """A MessagePublisher onto an InMemoryBus queue or topic."""

    def __init__(self, *, send: Callable[[RawMessage], None]) -> None:
        self._send = send

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        """Send the messages."""
        for envelope in envelopes:
            self._send(encode_envelope(envelope))

    async def close(self) -> None:
        """Nothing to release."""


class InMemorySource:
    """A MessageSource over an InMemoryBus queue or subscription."""

    def __init__(
        self, *, bus: InMemoryBus, entity: _Entity, resend: Callable[[RawMessage, float], None]
    ) -> None:
        self._bus = bus
        self._entity = entity
        self._resend = resend
        self._closed = False

    async def receive(self, *, max_messages: int, max_wait_seconds: float) -> Sequence[_InMemoryReceived]:
        """Lock and return up to `max_messages` visible messages, waiting up to `max_wait_seconds`."""
        if self._closed:
            raise RuntimeError("source is closed")
        taken = await self._bus._receive(  # noqa: SLF001
            self._entity, max_messages=max_messages, max_wait_seconds=max_wait_seconds
        )
        return [
            _InMemoryReceived(
                bus=self._bus,
                entity=self._entity,
                resend=self._resend,
                sequence_number=stored.sequence_number,
                lock_token=lock_token,
                raw=stored.raw,
                delivery_count=stored.delivery_count,
            )
            for stored, lock_token in taken
        ]

    async def close(self) -> None:
        """Stop receiving; unsettled messages return to the queue when their lock expires."""
        self._closed = True
