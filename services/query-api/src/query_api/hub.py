"""The change hub: applied changes fan out to the stream's subscribers, with a bounded replay buffer.

An event's position is the change feed's LSN of the change, the same number on every replica
(each replica reads the same feed), so a client may resume on any replica from the last id it saw.
When the feed has several ranges (physical partitions), LSNs are per range and order nothing
across them: the replica then numbers events itself and prefixes ids with an epoch of its own, so
an id from another replica (or an earlier run) is recognised and answered with a reload.
Publishing never waits: a subscriber whose queue is full is dropped and told so when it next reads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

if TYPE_CHECKING:
    from collections.abc import Iterable

    from otcommon.http import Principal

_log = structlog.get_logger(__name__)

DEFAULT_REPLAY_EVENTS: Final = 10_000
"""How many recent events a replica keeps for clients that resume."""
DEFAULT_SUBSCRIBER_QUEUE: Final = 1_000
"""Events waiting for one client before it counts as too slow and is dropped."""


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One applied change as the stream sends it: its position, its event and the JSON data."""

    position: int
    event_id: str
    data: str


class ResumeTooOldError(Exception):
    """The requested resume point is older than the replay buffer: the client must reload."""

    def __init__(self, requested: int, oldest_resumable: int | None) -> None:
        super().__init__(f"resume point {requested} is no longer buffered (oldest {oldest_resumable})")
        self.requested = requested
        self.oldest_resumable = oldest_resumable


class InvalidEventIdError(ValueError):
    """A Last-Event-ID that no replica of this stream gave out."""


class SubscriberDroppedError(Exception):
    """The subscriber fell too far behind (or the hub closed) and no longer receives events."""


@dataclass(eq=False, slots=True)
class Subscription:
    """One connected client: the events it may see, queued until it reads them."""

    principal: Principal
    queue: asyncio.Queue[ChangeEvent | None]
    replay: list[ChangeEvent] = field(default_factory=list)
    dropped: bool = False

    async def next_event(self) -> ChangeEvent:
        """The next live event; SubscriberDroppedError once the hub dropped this subscriber."""
        event = await self.queue.get()
        if event is None:
            raise SubscriberDroppedError("dropped")
        return event


class ChangeHub:
    """Fans events out to subscribers by scope; remembers the last ``replay_events`` for resumes."""

    def __init__(
        self,
        *,
        replay_events: int = DEFAULT_REPLAY_EVENTS,
        subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE,
    ) -> None:
        self._buffer: deque[ChangeEvent] = deque(maxlen=replay_events)
        self._subscriber_queue = subscriber_queue
        self._subscribers: set[Subscription] = set()
        # Every change after this position is either buffered or was evicted (then the floor moved up).
        self._floor: int | None = None
        self._epoch: str | None = None
        self.dropped_subscribers = 0

    @property
    def subscribers(self) -> int:
        """How many clients are connected."""
        return len(self._subscribers)

    @property
    def newest_position(self) -> int | None:
        """The position of the newest event published, else the start point, else None."""
        return self._buffer[-1].position if self._buffer else self._floor

    def begin_at(self, position: int, *, epoch: str | None = None) -> None:
        """Where publishing starts: every later position is published here.

        ``epoch`` is given when positions are this replica's own numbers rather than feed LSNs.
        """
        self._floor = position
        self._epoch = epoch

    def event_id(self, position: int) -> str:
        """The id the stream gives the event at ``position``."""
        return str(position) if self._epoch is None else f"{self._epoch}.{position}"

    def position_of(self, event_id: str) -> int:
        """The position an id names; ResumeTooOldError for another epoch's, InvalidEventIdError if bad."""
        epoch, dot, number = event_id.strip().rpartition(".")
        if not number.isdigit():
            raise InvalidEventIdError(event_id)
        if (epoch if dot else None) != self._epoch:
            raise ResumeTooOldError(int(number), self._floor)
        return int(number)

    def publish(self, events: Iterable[ChangeEvent]) -> None:
        """Buffer the events (in position order) and queue each for the subscribers that may see it."""
        for event in events:
            if self._buffer and event.position <= self._buffer[-1].position:
                _log.warning("change event out of order ignored", position=event.position)
                continue
            if len(self._buffer) == self._buffer.maxlen:
                self._floor = self._buffer[0].position
            self._buffer.append(event)
            for subscriber in list(self._subscribers):
                if subscriber.principal.may_see_event(event.event_id):
                    self._offer(subscriber, event)

    def subscribe(self, principal: Principal, *, after: int | None = None) -> Subscription:
        """A new subscriber; with ``after`` (a Last-Event-ID) the buffered events after it come first.

        Raises ResumeTooOldError when events after ``after`` may have been evicted already.
        """
        replay: list[ChangeEvent] = []
        if after is not None:
            if self._floor is None or after < self._floor:
                raise ResumeTooOldError(after, self._floor)
            replay = [
                event
                for event in self._buffer
                if event.position > after and principal.may_see_event(event.event_id)
            ]
        subscription = Subscription(
            principal=principal, queue=asyncio.Queue(maxsize=self._subscriber_queue + 1), replay=replay
        )
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber (its connection closed)."""
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """Drop every subscriber, so their streams end (the app is stopping)."""
        for subscriber in list(self._subscribers):
            self._drop(subscriber)

    def _offer(self, subscriber: Subscription, event: ChangeEvent) -> None:
        # One slot is kept for the drop marker, so dropping never waits either.
        if subscriber.queue.qsize() >= self._subscriber_queue:
            self.dropped_subscribers += 1
            _log.warning("slow stream client dropped", principal=subscriber.principal.name)
            self._drop(subscriber)
            return
        subscriber.queue.put_nowait(event)

    def _drop(self, subscriber: Subscription) -> None:
        subscriber.dropped = True
        self._subscribers.discard(subscriber)
        subscriber.queue.put_nowait(None)
