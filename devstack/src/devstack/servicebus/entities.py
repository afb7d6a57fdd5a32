"""The namespace's building blocks: stored messages, locks, sessions, entities and their settings."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from devstack.servicebus.messages import Envelope, Stamps

if TYPE_CHECKING:
    import uuid

    from devstack.servicebus.config import EntityProperties
    from devstack.servicebus.filters import RuleFilter

# Azure's "never" (TimeSpan.MaxValue is about 10675199 days).
FOREVER_SECONDS = 10675199 * 86400.0


class MessageState(StrEnum):
    ACTIVE = "active"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"


# `x-opt-message-state` values, as the SDK's ServiceBusMessageState reads them.
_WIRE_STATES = {MessageState.ACTIVE: 0, MessageState.DEFERRED: 1, MessageState.SCHEDULED: 2}


class Outcome(StrEnum):
    COMPLETE = "complete"
    ABANDON = "abandon"
    DEAD_LETTER = "dead-letter"
    DEFER = "defer"
    RELEASE = "release"  # given back unprocessed: no delivery attempt is counted


class Consumer(Protocol):
    """A receiving link as the broker sees it."""

    receive_and_delete: bool

    @property
    def credit(self) -> int: ...

    def deliver(self, message: StoredMessage, lock: Lock | None) -> None: ...

    def session_lost(self, session_id: str) -> None: ...


@dataclass(eq=False, slots=True)
class StoredMessage:
    sequence_number: int
    envelope: Envelope
    enqueued_at: float
    expires_at: float | None
    state: MessageState = MessageState.ACTIVE
    delivery_count: int = 0
    scheduled_at: float | None = None
    dead_letter_source: str | None = None
    lock: Lock | None = None
    in_ready: bool = False

    def encode(self, *, locked_until: float | None = None) -> bytes:
        """Encode for a receiver, with the broker's annotations."""
        stamps = Stamps(
            sequence_number=self.sequence_number,
            enqueued_ms=int(self.enqueued_at * 1000),
            locked_until_ms=None if locked_until is None else int(locked_until * 1000),
            dead_letter_source=self.dead_letter_source,
            message_state=_WIRE_STATES[self.state],
        )
        return self.envelope.encode(delivery_count=self.delivery_count, stamps=stamps)


@dataclass(eq=False, slots=True)
class Lock:
    token: uuid.UUID
    message: StoredMessage
    entity: MessageEntity
    locked_until: float
    owner: Consumer | None  # None when taken through the management link (deferred messages)
    session_id: str | None = None


@dataclass(eq=False)
class MessageSession:
    session_id: str
    ready: list[int] = field(default_factory=list)
    owner: Consumer | None = None
    locked_until: float = 0.0
    state: bytes | None = None
    state_updated_at: float | None = None  # epoch seconds of the last set-session-state


@dataclass(frozen=True)
class EntitySettings:
    lock_duration: float = 60.0
    max_delivery_count: int = 10
    default_ttl: float = FOREVER_SECONDS
    dead_letter_on_expiry: bool = False
    requires_session: bool = False
    forward_to: str = ""
    forward_dead_letters_to: str = ""

    @classmethod
    def from_config(cls, properties: EntityProperties, *, topic_ttl: float | None = None) -> EntitySettings:
        ttl = properties.default_message_time_to_live.total_seconds()
        return cls(
            lock_duration=properties.lock_duration.total_seconds(),
            max_delivery_count=properties.max_delivery_count,
            default_ttl=min(ttl, topic_ttl) if topic_ttl is not None else ttl,
            dead_letter_on_expiry=properties.dead_lettering_on_message_expiration,
            requires_session=properties.requires_session,
            forward_to=properties.forward_to.lower(),
            forward_dead_letters_to=properties.forward_dead_lettered_messages_to.lower(),
        )


@dataclass(eq=False)
class DuplicateHistory:
    window: float
    seen: dict[str, float] = field(default_factory=dict)
    order: deque[tuple[float, str]] = field(default_factory=deque)

    def is_duplicate(self, message_id: str, now: float) -> bool:
        seen_at = self.seen.get(message_id)
        return seen_at is not None and now - seen_at < self.window

    def remember(self, message_id: str, now: float) -> None:
        self.seen[message_id] = now
        self.order.append((now, message_id))

    def prune(self, now: float) -> list[str]:
        dropped = []
        while self.order and now - self.order[0][0] >= self.window:
            at, message_id = self.order.popleft()
            if self.seen.get(message_id) == at:
                del self.seen[message_id]
                dropped.append(message_id)
        return dropped


@dataclass(eq=False)
class MessageEntity:
    """Something receivers attach to: a queue, a subscription or a dead-letter queue."""

    name: str  # canonical path, e.g. "orders", "t/Subscriptions/s", "orders/$deadletterqueue"
    settings: EntitySettings
    is_dead_letter_queue: bool = False
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    ready: list[int] = field(default_factory=list)
    sessions: dict[str, MessageSession] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)
    consumer_sessions: dict[int, MessageSession] = field(default_factory=dict)
    dead_letter: MessageEntity | None = None
    next_consumer: int = 0


@dataclass(eq=False)
class SendTarget:
    """Something senders address: a queue or a topic."""

    name: str
    default_ttl: float
    duplicates: DuplicateHistory | None
    queue: MessageEntity | None = None
    subscriptions: list[tuple[MessageEntity, tuple[RuleFilter, ...]]] = field(default_factory=list)
    scheduled: dict[int, StoredMessage] = field(default_factory=dict)
