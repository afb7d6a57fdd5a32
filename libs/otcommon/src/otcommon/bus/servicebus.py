"""Adapters from `azure.servicebus.aio` to the bus Protocols, and factories for the real client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient
from azure.servicebus.exceptions import MessageAlreadySettled, ServiceBusError

from otcommon.bus.errors import SettlementError
from otcommon.bus.publisher import ServiceBusPublisher
from otcommon.bus.routing import address_retry
from otcommon.messages import RawMessage, from_service_bus_message, to_service_bus_message

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.servicebus import ServiceBusReceivedMessage
    from azure.servicebus.aio import ServiceBusReceiver, ServiceBusSender, ServiceBusSession

    from otcommon.bus.backoff import Backoff

_log = structlog.get_logger(__name__)
# What the SDK raises when a settlement cannot happen; each means the broker will redeliver.
_SETTLEMENT_FAILURES = (ServiceBusError, MessageAlreadySettled)

LOCK_RENEWAL_LEAD_SECONDS = 20.0
"""A message is handed to the lock renewer this long before its lock would expire, not when received.

The SDK's renewer runs a task per message that wakes every second. With thousands of messages in
flight (a backlog enriched at once) a loop of that shape took a fifth of a core (10,000 tasks), while
most of them are
settled long before their lock (one minute by default) needs renewing. The renewer itself renews
ten seconds before expiry, so it is handed the message in time.
"""


def client_from_connection_string(*, connection_string: str, retry_total: int = 3) -> ServiceBusClient:
    """A client from a SAS connection string, or the local emulator's (`UseDevelopmentEmulator=true`)."""
    # The SDK reads UseDevelopmentEmulator=true itself and then connects without TLS.
    return ServiceBusClient.from_connection_string(connection_string, retry_total=retry_total)


def client_from_namespace(
    *, fully_qualified_namespace: str, credential: AsyncTokenCredential, retry_total: int = 3
) -> ServiceBusClient:
    """A client for `<namespace>.servicebus.windows.net` authenticated with an Entra ID credential."""
    return ServiceBusClient(fully_qualified_namespace, credential, retry_total=retry_total)


def queue_publisher(
    *, client: ServiceBusClient, queue_name: str, max_attempts: int = 5, backoff: Backoff | None = None
) -> ServiceBusPublisher:
    """A MessagePublisher to one queue."""
    return ServiceBusPublisher(
        sender=client.get_queue_sender(queue_name), max_attempts=max_attempts, backoff=backoff
    )


def topic_publisher(
    *, client: ServiceBusClient, topic_name: str, max_attempts: int = 5, backoff: Backoff | None = None
) -> ServiceBusPublisher:
    """A MessagePublisher to one topic."""
    return ServiceBusPublisher(
        sender=client.get_topic_sender(topic_name), max_attempts=max_attempts, backoff=backoff
    )


def queue_source(
    *,
    client: ServiceBusClient,
    queue_name: str,
    prefetch_count: int = 0,
    max_lock_renewal_seconds: float = 300.0,
    renewal_lead_seconds: float = LOCK_RENEWAL_LEAD_SECONDS,
) -> ServiceBusSource:
    """A MessageSource on one queue, renewing each message's lock for up to `max_lock_renewal_seconds`."""
    renewer = _lock_renewer(max_lock_renewal_seconds)
    receiver = client.get_queue_receiver(queue_name, prefetch_count=prefetch_count)
    return ServiceBusSource(
        receiver=receiver,
        scheduler=client.get_queue_sender(queue_name),
        renewer=renewer,
        renewal_lead_seconds=renewal_lead_seconds,
    )


def subscription_source(
    *,
    client: ServiceBusClient,
    topic_name: str,
    subscription_name: str,
    prefetch_count: int = 0,
    max_lock_renewal_seconds: float = 300.0,
    renewal_lead_seconds: float = LOCK_RENEWAL_LEAD_SECONDS,
) -> ServiceBusSource:
    """A MessageSource on one subscription of a topic; its retries reach this subscription only.

    Every subscription of the topic must declare the retry routing rule (`otcommon.bus.routing`).
    """
    renewer = _lock_renewer(max_lock_renewal_seconds)
    receiver = client.get_subscription_receiver(topic_name, subscription_name, prefetch_count=prefetch_count)
    return ServiceBusSource(
        receiver=receiver,
        # Azure cannot send to a subscription: the retry goes to the topic, addressed to this subscription.
        scheduler=client.get_topic_sender(topic_name),
        renewer=renewer,
        retry_subscription=subscription_name,
        renewal_lead_seconds=renewal_lead_seconds,
    )


def _lock_renewer(max_lock_renewal_seconds: float) -> AutoLockRenewer:
    # Prefetched messages are locked while they wait in the buffer, before the renewer knows them: keep
    # prefetch_count near the consumer's concurrency so none waits there for a whole lock duration.
    return AutoLockRenewer(
        max_lock_renewal_duration=max_lock_renewal_seconds, on_lock_renew_failure=_log_lock_renew_failure
    )


class ServiceBusSource:
    """A MessageSource over a peek-lock receiver; retries are scheduled through a sender to its entity.

    For a subscription, `scheduler` sends to the topic and `retry_subscription` names the subscription, so
    each retry is addressed to it (see `otcommon.bus.routing`).
    """

    def __init__(
        self,
        *,
        receiver: ServiceBusReceiver,
        scheduler: ServiceBusSender,
        renewer: AutoLockRenewer | None,
        retry_subscription: str | None = None,
        renewal_lead_seconds: float = LOCK_RENEWAL_LEAD_SECONDS,
    ) -> None:
        self._receiver = receiver
        self._scheduler = scheduler
        self._renewals = None if renewer is None else LockRenewals(renewer, lead_seconds=renewal_lead_seconds)
        self._retry_subscription = retry_subscription
        self._opened = False

    async def receive(self, *, max_messages: int, max_wait_seconds: float) -> list[ServiceBusReceived]:
        """Up to `max_messages` locked messages, each renewed once its lock nears expiry (`LockRenewals`)."""
        if not self._opened:
            # Open the link first, with the SDK's own retries: an unopened receiver counts opening the
            # connection and link against the (short) receive wait, and times out again on every retry.
            await self._receiver.__aenter__()
            self._opened = True
        messages = await self._receiver.receive_messages(
            max_message_count=max_messages, max_wait_time=max_wait_seconds
        )
        if self._renewals is not None:
            for message in messages:
                self._renewals.watch(self._receiver, message)
        return [
            ServiceBusReceived(
                message=message,
                receiver=self._receiver,
                scheduler=self._scheduler,
                retry_subscription=self._retry_subscription,
                renewals=self._renewals,
            )
            for message in messages
        ]

    async def close(self) -> None:
        """Stop renewing locks, then close the receiver and the scheduling sender."""
        try:
            if self._renewals is not None:
                await self._renewals.close()
        finally:
            try:
                await self._receiver.close()
            finally:
                await self._scheduler.close()


class LockRenewals:
    """Hands each received message to the SDK's lock renewer once its lock is within `lead_seconds` of expiry.

    A message settled before then never costs the renewer a task (`LOCK_RENEWAL_LEAD_SECONDS`); one
    whose lock is that close already is handed over at once. Until then it waits as a timer, which
    costs nothing while it waits. The lead must exceed the renewer's own renew period (10 s): handed
    a lock with less left, the renewer shortens that period by a rule of thumb that can miss it.
    """

    def __init__(self, renewer: AutoLockRenewer, *, lead_seconds: float) -> None:
        self._renewer = renewer
        self._lead_seconds = lead_seconds
        self._waiting: dict[int, asyncio.TimerHandle] = {}

    def watch(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        """Renew `message`'s lock from `lead_seconds` before it expires until it is settled."""
        locked_until = message.locked_until_utc
        delay = 0.0 if locked_until is None else (locked_until - datetime.now(UTC)).total_seconds()
        delay -= self._lead_seconds
        if delay <= 0:
            self._register(receiver, message)
            return
        key = id(message)

        def hand_over() -> None:
            self._waiting.pop(key, None)
            self._register(receiver, message)

        self._waiting[key] = asyncio.get_running_loop().call_later(delay, hand_over)

    def settled(self, message: ServiceBusReceivedMessage) -> None:
        """The message is being settled: it needs no renewal it has not started yet."""
        handle = self._waiting.pop(id(message), None)
        if handle is not None:
            handle.cancel()

    async def close(self) -> None:
        """Hand nothing more to the renewer, then close it (its renewals end)."""
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        await self._renewer.close()

    def _register(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        try:
            self._renewer.register(receiver, message)
        except (ServiceBusError, ValueError) as error:
            # A renewer already closed (shutdown), or a message no longer locked: the broker
            # redelivers it when its lock expires, so nothing is lost.
            _log.warning(
                "message lock renewal not started", message_id=message.message_id, error=type(error).__name__
            )


class ServiceBusReceived:
    """A received Service Bus message with the settle operations of the ReceivedMessage Protocol."""

    def __init__(
        self,
        *,
        message: ServiceBusReceivedMessage,
        receiver: ServiceBusReceiver,
        scheduler: ServiceBusSender,
        retry_subscription: str | None = None,
        renewals: LockRenewals | None = None,
    ) -> None:
        self._message = message
        self._receiver = receiver
        self._scheduler = scheduler
        self._retry_subscription = retry_subscription
        self._renewals = renewals
        self.raw: RawMessage = from_service_bus_message(message)
        # The SDK reports the AMQP header, which counts earlier attempts only; this interface counts this one.
        self.delivery_count: int = (message.delivery_count or 0) + 1

    async def complete(self) -> None:
        """Remove the message from the queue."""
        self._stop_renewal()
        try:
            await self._receiver.complete_message(self._message)
        except _SETTLEMENT_FAILURES as error:
            raise SettlementError(f"complete failed: {type(error).__name__}") from error

    async def abandon(self) -> None:
        """Return the message to the queue for redelivery."""
        self._stop_renewal()
        try:
            await self._receiver.abandon_message(self._message)
        except _SETTLEMENT_FAILURES as error:
            raise SettlementError(f"abandon failed: {type(error).__name__}") from error

    async def dead_letter(self, *, reason: str, description: str) -> None:
        """Move the message to the dead-letter queue."""
        self._stop_renewal()
        try:
            await self._receiver.dead_letter_message(
                self._message, reason=reason, error_description=description
            )
        except _SETTLEMENT_FAILURES as error:
            raise SettlementError(f"dead-letter failed: {type(error).__name__}") from error

    def _stop_renewal(self) -> None:
        if self._renewals is not None:
            self._renewals.settled(self._message)

    async def reschedule(self, *, copy: RawMessage, delay_seconds: float) -> None:
        """Schedule `copy` on this message's entity after the delay, then complete this message."""
        if self._retry_subscription is not None:
            copy = address_retry(copy, subscription=self._retry_subscription)
        enqueue_at = datetime.now(UTC) + timedelta(seconds=delay_seconds)
        try:
            await self._scheduler.schedule_messages(to_service_bus_message(copy), enqueue_at)
        except ServiceBusError as error:
            # Without a scheduled copy the original must come back, or the message would be lost.
            await self.abandon()
            raise SettlementError(f"reschedule failed, abandoned instead: {type(error).__name__}") from error
        await self.complete()


async def _log_lock_renew_failure(
    renewable: ServiceBusSession | ServiceBusReceivedMessage, error: Exception | None
) -> None:
    message_id = getattr(renewable, "message_id", None)
    _log.warning(
        "message lock renewal stopped",
        message_id=message_id,
        error_type=type(error).__name__ if error is not None else None,
    )
