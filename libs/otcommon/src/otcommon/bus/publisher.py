"""Publishing to Service Bus: batches filled to the link's size limit, retries on transient errors."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog
from azure.servicebus.exceptions import MessageSizeExceededError

from otcommon.bus.backoff import Backoff
from otcommon.bus.errors import PublishError, is_transient_error
from otcommon.messages import encode_envelope, to_service_bus_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch

    from otcommon.messages import Envelope, Message, RawMessage

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


class BatchSender(Protocol):
    """The part of `azure.servicebus.aio.ServiceBusSender` the publisher uses."""

    async def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        """An empty batch sized for the link."""
        ...

    async def send_messages(
        self,
        message: ServiceBusMessageBatch,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  # the SDK's own timeout, covering its internal retries
    ) -> None:
        """Send one batch."""
        ...

    async def close(self) -> None:
        """Close the link."""
        ...


class ServiceBusPublisher:
    """A MessagePublisher over one Service Bus sender."""

    def __init__(
        self,
        *,
        sender: BatchSender,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        send_timeout_seconds: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._sender = sender
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._send_timeout_seconds = send_timeout_seconds
        self._sleep = sleep
        # The SDK's sender is not coroutine-safe (its first open races when shared), and handlers
        # publish concurrently through one publisher: publishes take turns.
        self._turn = asyncio.Lock()

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        """Send the messages in as few batches as fit; raises PublishError when they could not all be sent."""
        await self.publish_raw(encode_envelope(envelope) for envelope in envelopes)

    async def publish_raw(self, messages: Iterable[RawMessage]) -> None:
        """Send wire-form messages (already encoded, or forwarded as received)."""
        outgoing = [to_service_bus_message(raw) for raw in messages]
        if not outgoing:
            return
        async with self._turn:
            await self._publish_in_batches(outgoing)

    async def _publish_in_batches(self, outgoing: list[ServiceBusMessage]) -> None:
        sent = 0
        batches = 0
        batch = await self._retrying(self._sender.create_message_batch, sent=sent)
        for message in outgoing:
            if _try_add(batch, message):
                continue
            if len(batch) == 0:
                raise PublishError(
                    f"message {message.message_id} is larger than a batch ({batch.max_size_in_bytes} bytes)",
                    sent=sent,
                )
            await self._send(batch, sent=sent)
            sent += len(batch)
            batches += 1
            batch = await self._retrying(self._sender.create_message_batch, sent=sent)
            if not _try_add(batch, message):
                raise PublishError(
                    f"message {message.message_id} is larger than a batch ({batch.max_size_in_bytes} bytes)",
                    sent=sent,
                )
        await self._send(batch, sent=sent)
        sent += len(batch)
        batches += 1
        _log.debug("messages published", count=sent, batches=batches)

    async def close(self) -> None:
        """Close the sender."""
        await self._sender.close()

    async def _send(self, batch: ServiceBusMessageBatch, *, sent: int) -> None:
        async def send() -> None:
            await self._sender.send_messages(batch, timeout=self._send_timeout_seconds)

        await self._retrying(send, sent=sent)

    async def _retrying(self, operation: Callable[[], Awaitable[_T]], *, sent: int) -> _T:
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await operation()
            except Exception as error:
                if not is_transient_error(error):
                    raise PublishError(f"publish failed: {type(error).__name__}", sent=sent) from error
                if attempt == self._max_attempts:
                    raise PublishError(
                        f"publish failed after {attempt} attempts: {type(error).__name__}", sent=sent
                    ) from error
                delay = self._backoff.delay_seconds(attempt=attempt)
                _log.warning(
                    "publish retrying",
                    attempt=attempt,
                    delay_seconds=round(delay, 3),
                    error_type=type(error).__name__,
                )
                await self._sleep(delay)
        # The loop either returns or raises; this keeps type checkers and readers sure of it.
        raise AssertionError("unreachable")


def _try_add(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True
