"""The small typed interface services depend on; Service Bus and the in-memory fake both implement it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from otcommon.messages import Envelope, Message, RawMessage


class MessagePublisher(Protocol):
    """Sends messages to one queue or topic."""

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        """Send the messages; raises PublishError when they could not all be sent."""
        ...

    async def close(self) -> None:
        """Release the connection to the entity."""
        ...


class ReceivedMessage(Protocol):
    """A locked message; exactly one settle operation ends its lock."""

    @property
    def raw(self) -> RawMessage:
        """The message as received."""
        ...

    @property
    def delivery_count(self) -> int:
        """How many times the broker has handed this message out, this time included."""
        ...

    async def complete(self) -> None:
        """Remove the message from the queue."""
        ...

    async def abandon(self) -> None:
        """Release the lock so the message is delivered again (the broker dead-letters it past its max)."""
        ...

    async def dead_letter(self, *, reason: str, description: str) -> None:
        """Move the message to the dead-letter queue with a reason and a description."""
        ...

    async def reschedule(self, *, copy: RawMessage, delay_seconds: float) -> None:
        """Schedule `copy` for delivery after the delay, then complete this message."""
        ...


class MessageSource(Protocol):
    """Receives locked messages from one queue or subscription."""

    async def receive(self, *, max_messages: int, max_wait_seconds: float) -> Sequence[ReceivedMessage]:
        """Up to `max_messages` messages; an empty sequence when none arrive within the wait."""
        ...

    async def close(self) -> None:
        """Stop lock renewal and release the connection; unsettled messages return to the queue."""
        ...


@dataclass(frozen=True, kw_only=True)
class DeadLetteredMessage:
    """A message read from a dead-letter queue."""

    raw: RawMessage
    reason: str | None
    description: str | None
    delivery_count: int
