"""Errors a message handler raises to choose its message's fate, and errors the bus raises."""

from __future__ import annotations

import builtins

from azure.servicebus.exceptions import (
    ServiceBusAuthorizationError,
    ServiceBusError,
)


class RetryableError(Exception):
    """The handler may succeed later (a dependency is down or rate limited): retry with backoff."""

    def __init__(self, description: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(description)
        # Never put personal data here: it is logged, and becomes the dead-letter description
        # when retries run out.
        self.description = description
        self.retry_after_seconds = retry_after_seconds


class PermanentError(Exception):
    """The handler can never succeed with this message: dead-letter it with a reason."""

    def __init__(self, description: str, *, reason: str = "PermanentError") -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        # Never put personal data here: it is logged and stored in the dead-letter queue.
        self.description = description


class PublishError(Exception):
    """Messages could not be published; re-publishing is safe because message ids are deterministic."""

    def __init__(self, description: str, *, sent: int) -> None:
        super().__init__(description)
        self.sent = sent


class SettlementError(Exception):
    """A message could not be settled (lock lost, or already settled); the broker will redeliver it."""


def is_transient_error(error: BaseException) -> bool:
    """Whether an operation that failed with this error is worth retrying."""
    if isinstance(error, ServiceBusAuthorizationError):
        # The SDK marks it retryable, but missing rights do not come back by waiting.
        return False
    if isinstance(error, ServiceBusError):
        # The SDK keeps its own classification (connection, server busy, timeout ...) in a private flag.
        return bool(getattr(error, "_retryable", False))
    return isinstance(error, builtins.TimeoutError | builtins.ConnectionError)
