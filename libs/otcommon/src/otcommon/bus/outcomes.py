"""The one place that turns a handler's result into complete, abandon, reschedule or dead-letter.

Retry choice: a RetryableError reschedules a copy of the message (attempt + 1 in its application
properties) after an exponential backoff and completes the original, rather than abandoning it.
Abandoning redelivers at once, which would spend the broker's max delivery count within seconds while a
dependency is down; a scheduled copy waits. After `max_attempts` the message is dead-lettered. Unexpected
exceptions are abandoned instead: they are bugs or surprises, and the broker's max delivery count turns a
poison message into a dead letter without any bookkeeping here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from otcommon.bus.backoff import Backoff
from otcommon.bus.errors import PermanentError, RetryableError
from otcommon.messages import ATTEMPT_PROPERTY, MessageDecodeError, RawMessage, message_id_for

if TYPE_CHECKING:
    from otcommon.bus.interface import ReceivedMessage

ORIGINAL_MESSAGE_ID_PROPERTY = "originalMessageId"
RETRIES_EXHAUSTED = "RetriesExhausted"
UNEXPECTED_ERROR = "UnexpectedError"
SHUTDOWN = "ShutDown"
# Dead-letter reason and description travel as application properties; keep them well under the limits.
_MAX_REASON_LENGTH = 128
_MAX_DESCRIPTION_LENGTH = 1024


class Settlement(StrEnum):
    """What happens to a received message."""

    COMPLETE = "complete"
    ABANDON = "abandon"
    RESCHEDULE = "reschedule"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A settlement decision with its reason (for logs and the dead-letter queue)."""

    settlement: Settlement
    reason: str | None = None
    description: str | None = None
    delay_seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a RetryableError is retried by rescheduling."""

    max_attempts: int = 5
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_seconds=5.0, maximum_seconds=300.0))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


def decide_outcome(*, error: BaseException | None, attempt: int, policy: RetryPolicy) -> Outcome:
    """The settlement for a message whose handler ended with `error` (None for success)."""
    match error:
        case None:
            return Outcome(settlement=Settlement.COMPLETE)
        case MessageDecodeError():
            return Outcome(
                settlement=Settlement.DEAD_LETTER, reason=error.reason.value, description=error.description
            )
        case PermanentError():
            return Outcome(
                settlement=Settlement.DEAD_LETTER, reason=error.reason, description=error.description
            )
        case RetryableError():
            return _retry_outcome(error=error, attempt=attempt, policy=policy)
        case asyncio.CancelledError():
            return Outcome(settlement=Settlement.ABANDON, reason=SHUTDOWN)
        case _:
            # The exception text may quote input (personal data), so only its type is recorded.
            return Outcome(
                settlement=Settlement.ABANDON, reason=UNEXPECTED_ERROR, description=type(error).__name__
            )


def _retry_outcome(*, error: RetryableError, attempt: int, policy: RetryPolicy) -> Outcome:
    if attempt >= policy.max_attempts:
        return Outcome(
            settlement=Settlement.DEAD_LETTER,
            reason=RETRIES_EXHAUSTED,
            description=f"gave up after {attempt} attempts: {error.description}",
        )
    delay = error.retry_after_seconds
    if delay is None:
        delay = policy.backoff.delay_seconds(attempt=attempt)
    return Outcome(
        settlement=Settlement.RESCHEDULE,
        reason="Retryable",
        description=error.description,
        delay_seconds=delay,
    )


async def apply_outcome(received: ReceivedMessage, outcome: Outcome) -> None:
    """Settle a received message as decided; raises SettlementError when its lock is gone."""
    match outcome.settlement:
        case Settlement.COMPLETE:
            await received.complete()
        case Settlement.ABANDON:
            await received.abandon()
        case Settlement.DEAD_LETTER:
            await received.dead_letter(
                reason=(outcome.reason or "Unspecified")[:_MAX_REASON_LENGTH],
                description=(outcome.description or "")[:_MAX_DESCRIPTION_LENGTH],
            )
        case Settlement.RESCHEDULE:
            await received.reschedule(copy=retry_copy(received.raw), delay_seconds=outcome.delay_seconds)


def attempt_of(raw: RawMessage) -> int:
    """The attempt number a message carries (1 when it carries none)."""
    value = raw.properties.get(ATTEMPT_PROPERTY)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def retry_copy(raw: RawMessage) -> RawMessage:
    """The message to schedule for the next attempt of `raw`."""
    attempt = attempt_of(raw) + 1
    original_id = raw.properties.get(ORIGINAL_MESSAGE_ID_PROPERTY, raw.message_id or "")
    properties = dict(raw.properties)
    properties[ATTEMPT_PROPERTY] = attempt
    properties[ORIGINAL_MESSAGE_ID_PROPERTY] = str(original_id)
    return RawMessage(
        body=raw.body,
        subject=raw.subject,
        message_id=retry_message_id(original_id=str(original_id), attempt=attempt),
        content_type=raw.content_type,
        correlation_id=raw.correlation_id,
        properties=properties,
    )


def retry_message_id(*, original_id: str, attempt: int, subscription: str | None = None) -> str:
    """The message id of attempt number `attempt` of a message (for one subscription, on a topic)."""
    # The original id would be dropped by duplicate detection; an id derived from (original, attempt)
    # still lets detection drop a second copy of the same attempt if completing the original failed.
    # On a topic, each subscription retries on its own: the same attempt of two subscriptions needs two
    # ids, or the topic's duplicate detection would drop the second subscription's retry.
    key = f"{original_id}/{attempt}" if subscription is None else f"{original_id}/{subscription}/{attempt}"
    return message_id_for(message_type="retry", key=key)
