"""Behaviour every bus backend must show, written against the bus Protocols only.

A backend's test module provides a `harness` fixture (see BusHarness) for a fresh, empty queue with
duplicate detection on, and subclasses BusContract. The in-memory fake runs it by default; a real
Service Bus (the local emulator) runs the same class under the integration marker.

TopicBusContract runs the same tests on a subscription of a topic (the harness publishes to the topic and
receives from its subscription `primary`), plus what only topics do: every subscription gets a copy, a
subject filter chooses, and a retry reaches only the subscription that failed. Beside `primary` the topic
has, without receivers, `sibling` (every new message, as `primary`) and `changes` (only messages with the
subject `TransactionChanged`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from azure.servicebus import ServiceBusSubQueue

from otcommon.bus import (
    Backoff,
    Consumer,
    ConsumerSettings,
    DeadLetteredMessage,
    Delivery,
    MessagePublisher,
    MessageSource,
    PermanentError,
    RetryableError,
    RetryPolicy,
    queue_publisher,
    queue_source,
    subscription_source,
    topic_publisher,
)
from otcommon.messages import (
    ATTEMPT_PROPERTY,
    SCHEMA_VERSION_PROPERTY,
    PaymentEnrichmentRequested,
    RawMessage,
    TransactionChange,
    TransactionChanged,
    from_service_bus_message,
    make_envelope,
    to_service_bus_message,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

# Upper bound for anything the tests wait for; a passing run waits far less.
WAIT_SECONDS = 10.0


class BusHarness(Protocol):
    """Backend-specific setup for one queue under test."""

    def publisher(self) -> MessagePublisher:
        """A publisher to the queue."""
        ...

    def source(self) -> MessageSource:
        """A new receiver on the queue (a consumer closes its source when it stops)."""
        ...

    async def send_raw(self, message: RawMessage) -> None:
        """Put a wire-form message on the queue as a foreign sender would, bypassing encoding."""
        ...

    async def dead_letters(self, *, count: int) -> list[DeadLetteredMessage]:
        """The first `count` dead-lettered messages, waiting (bounded) for them to arrive."""
        ...

    async def remaining(self) -> int:
        """How many messages are still on the queue (available, locked or scheduled)."""
        ...


class TopicBusHarness(BusHarness, Protocol):
    """A BusHarness whose queue is the subscription `primary` of a topic; see the module docstring."""

    async def waiting_on(self, subscription: str) -> list[RawMessage]:
        """The messages waiting on another subscription of the topic, in order."""
        ...


class ServiceBusHarness:
    """BusHarness for a real Service Bus queue (the local emulator, or Azure) reached through `client`.

    The queue must be fresh for each test (or drained), with duplicate detection on; call close() after.
    """

    def __init__(self, *, client: ServiceBusClient, queue_name: str) -> None:
        self.client = client
        self.queue_name = queue_name
        self._publishers: list[MessagePublisher] = []

    def publisher(self) -> MessagePublisher:
        publisher = queue_publisher(client=self.client, queue_name=self.queue_name)
        self._publishers.append(publisher)
        return publisher

    def source(self) -> MessageSource:
        return queue_source(client=self.client, queue_name=self.queue_name, max_lock_renewal_seconds=60.0)

    def _sender(self) -> ServiceBusSender:
        return self.client.get_queue_sender(self.queue_name)

    def _receiver(self, **options: object) -> ServiceBusReceiver:
        return self.client.get_queue_receiver(self.queue_name, **options)

    async def send_raw(self, message: RawMessage) -> None:
        async with self._sender() as sender:
            await sender.send_messages(to_service_bus_message(message))

    async def dead_letters(self, *, count: int) -> list[DeadLetteredMessage]:
        found: list[DeadLetteredMessage] = []
        receiver = self._receiver(sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        async with receiver, asyncio.timeout(WAIT_SECONDS):
            while len(found) < count:
                for message in await receiver.receive_messages(max_message_count=count, max_wait_time=1.0):
                    found.append(
                        DeadLetteredMessage(
                            raw=from_service_bus_message(message),
                            reason=message.dead_letter_reason,
                            description=message.dead_letter_error_description,
                            delivery_count=(message.delivery_count or 0) + 1,
                        )
                    )
                    await receiver.complete_message(message)
        return found

    async def remaining(self) -> int:
        async with self._receiver() as receiver:
            return len(await receiver.peek_messages(max_message_count=100))

    async def close(self) -> None:
        for publisher in self._publishers:
            await publisher.close()


class ServiceBusTopicHarness(ServiceBusHarness):
    """TopicBusHarness for a real Service Bus topic with subscriptions `primary` and `sibling`."""

    def __init__(self, *, client: ServiceBusClient, topic_name: str) -> None:
        super().__init__(client=client, queue_name=topic_name)
        self.topic_name = topic_name

    def publisher(self) -> MessagePublisher:
        publisher = topic_publisher(client=self.client, topic_name=self.topic_name)
        self._publishers.append(publisher)
        return publisher

    def source(self) -> MessageSource:
        return subscription_source(
            client=self.client,
            topic_name=self.topic_name,
            subscription_name="primary",
            max_lock_renewal_seconds=60.0,
        )

    def _sender(self) -> ServiceBusSender:
        return self.client.get_topic_sender(self.topic_name)

    def _receiver(self, subscription: str = "primary", **options: object) -> ServiceBusReceiver:
        return self.client.get_subscription_receiver(self.topic_name, subscription, **options)

    async def waiting_on(self, subscription: str) -> list[RawMessage]:
        async with self._receiver(subscription) as receiver:
            return [from_service_bus_message(m) for m in await receiver.peek_messages(max_message_count=100)]


def enrichment(payment_id: str = "pi_1", *, transaction_id: str = "txn-1") -> PaymentEnrichmentRequested:
    return PaymentEnrichmentRequested(
        payment_id=payment_id,
        transaction_id=transaction_id,
        event_id="evt-1",
        requested_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def payment_id(delivery: Delivery) -> str:
    assert isinstance(delivery.message, PaymentEnrichmentRequested)
    return delivery.message.payment_id


def settings(**overrides) -> ConsumerSettings:
    fields = {
        "entity_name": "contract",
        "max_concurrency": 4,
        "max_wait_seconds": 0.2,
        "shutdown_timeout_seconds": 5.0,
        # Tiny backoff: the tests are about which outcome happens, not about waiting.
        "retry_policy": RetryPolicy(
            max_attempts=3, backoff=Backoff(initial_seconds=0.01, maximum_seconds=0.05)
        ),
    }
    return ConsumerSettings(**(fields | overrides))


@contextlib.asynccontextmanager
async def consuming(
    harness: BusHarness, handler: Callable[[Delivery], Awaitable[None]], **overrides
) -> AsyncIterator[Consumer]:
    consumer = Consumer(source=harness.source(), handler=handler, settings=settings(**overrides))
    running = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        await asyncio.wait_for(consumer.stop(), WAIT_SECONDS)
        await running


class Recorder:
    """A handler that records deliveries; tests await them with a bound."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._arrived: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        await self._arrived.put(delivery)

    async def next(self) -> Delivery:
        return await asyncio.wait_for(self._arrived.get(), WAIT_SECONDS)


class BusContract:
    async def test_published_message_reaches_the_handler_typed_and_complete_removes_it(self, harness):
        envelope = make_envelope(enrichment(), correlation_id="run-1")
        recorder = Recorder()

        await harness.publisher().publish([envelope])
        async with consuming(harness, recorder):
            delivery = await recorder.next()

        assert delivery.message == enrichment()
        assert isinstance(delivery.message, PaymentEnrichmentRequested)
        assert delivery.envelope.message_id == envelope.message_id
        assert delivery.envelope.correlation_id == "run-1"
        assert delivery.delivery_count == 1
        assert await harness.remaining() == 0
        assert len(recorder.deliveries) == 1

    async def test_retryable_error_reschedules_the_next_attempt(self, harness):
        failures: list[int] = []
        recorder = Recorder()

        async def fail_first_attempt(delivery: Delivery) -> None:
            if delivery.envelope.attempt == 1:
                failures.append(delivery.envelope.attempt)
                raise RetryableError("stripe rate limited")
            await recorder(delivery)

        await harness.publisher().publish([make_envelope(enrichment(), correlation_id="run-2")])
        async with consuming(harness, fail_first_attempt):
            retried = await recorder.next()

        assert failures == [1]
        assert retried.envelope.attempt == 2
        assert retried.message == enrichment()
        assert retried.envelope.correlation_id == "run-2"
        assert await harness.remaining() == 0

    async def test_retryable_error_dead_letters_when_attempts_run_out(self, harness):
        attempts: list[int] = []

        async def always_unavailable(delivery: Delivery) -> None:
            attempts.append(delivery.envelope.attempt)
            raise RetryableError("stripe unavailable")

        await harness.publisher().publish([make_envelope(enrichment())])
        async with consuming(harness, always_unavailable):
            [dead] = await harness.dead_letters(count=1)

        assert attempts == [1, 2, 3]
        assert dead.reason == "RetriesExhausted"
        assert dead.description is not None
        assert "stripe unavailable" in dead.description
        assert await harness.remaining() == 0

    async def test_unexpected_error_is_redelivered_with_delivery_count_plus_one(self, harness):
        recorder = Recorder()

        async def crash_first_delivery(delivery: Delivery) -> None:
            await recorder(delivery)
            if delivery.delivery_count == 1:
                raise RuntimeError("bug")

        await harness.publisher().publish([make_envelope(enrichment())])
        async with consuming(harness, crash_first_delivery):
            first = await recorder.next()
            second = await recorder.next()

        assert (first.delivery_count, second.delivery_count) == (1, 2)
        assert first.envelope.message_id == second.envelope.message_id
        assert second.envelope.attempt == 1
        assert await harness.remaining() == 0

    async def test_permanent_error_dead_letters_with_reason_and_description(self, harness):
        envelope = make_envelope(enrichment())
        calls: list[Delivery] = []

        async def no_such_payment(delivery: Delivery) -> None:
            calls.append(delivery)
            raise PermanentError("payment pi_1 is in no known account", reason="PaymentNotFound")

        await harness.publisher().publish([envelope])
        async with consuming(harness, no_such_payment):
            [dead] = await harness.dead_letters(count=1)

        assert len(calls) == 1
        assert dead.reason == "PaymentNotFound"
        assert dead.description == "payment pi_1 is in no known account"
        assert dead.raw.message_id == envelope.message_id
        assert dead.raw.body == calls[0].envelope.message.model_dump_json(by_alias=True).encode()
        assert await harness.remaining() == 0

    async def test_undecodable_messages_are_dead_lettered_without_reaching_the_handler(self, harness):
        recorder = Recorder()
        versioned = {SCHEMA_VERSION_PROPERTY: 1}
        await harness.send_raw(
            RawMessage(
                body=b"{not json",
                subject="PaymentEnrichmentRequested",
                message_id="bad-json",
                properties=versioned,
            )
        )
        await harness.send_raw(
            RawMessage(body=b"{}", subject="Unheard", message_id="unknown", properties=versioned)
        )

        async with consuming(harness, recorder):
            dead = await harness.dead_letters(count=2)

        reasons = {letter.raw.message_id: letter.reason for letter in dead}
        assert reasons == {"bad-json": "InvalidJson", "unknown": "UnknownMessageType"}
        assert all(letter.description for letter in dead)
        assert recorder.deliveries == []
        assert await harness.remaining() == 0

    async def test_duplicate_message_id_is_dropped(self, harness):
        recorder = Recorder()
        publisher = harness.publisher()

        await publisher.publish([make_envelope(enrichment("pi_1"))])
        await publisher.publish([make_envelope(enrichment("pi_1"))])  # the same request again: one id
        await publisher.publish([make_envelope(enrichment("pi_2"))])
        async with consuming(harness, recorder):
            await recorder.next()
            await recorder.next()

        # A delivered or waiting duplicate would show here: stop() lets in-flight handlers finish.
        assert sorted(payment_id(d) for d in recorder.deliveries) == ["pi_1", "pi_2"]
        assert await harness.remaining() == 0

    async def test_many_coroutines_publishing_through_one_publisher_lose_nothing(self, harness):
        # Handlers announce changes concurrently through one publisher; the SDK's sender is not
        # coroutine-safe (its first open races), so the publisher must take turns.
        publisher = harness.publisher()
        payment_ids = [f"pi_together{n}" for n in range(16)]
        await asyncio.gather(*(publisher.publish([make_envelope(enrichment(p))]) for p in payment_ids))
        recorder = Recorder()
        async with consuming(harness, recorder):
            for _ in payment_ids:
                await recorder.next()

        assert sorted(payment_id(d) for d in recorder.deliveries) == sorted(payment_ids)
        assert await harness.remaining() == 0

    async def test_concurrency_is_bounded(self, harness):
        limit = 3
        active = 0
        peak = 0
        started: asyncio.Queue[None] = asyncio.Queue()
        release = asyncio.Event()
        done = Recorder()

        async def slow(delivery: Delivery) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await started.put(None)
            await release.wait()
            active -= 1
            await done(delivery)

        await harness.publisher().publish(
            [make_envelope(enrichment(f"pi_{n}")) for n in range(limit * 2 + 1)]
        )
        async with consuming(harness, slow, max_concurrency=limit):
            for _ in range(limit):
                await asyncio.wait_for(started.get(), WAIT_SECONDS)
            # Long enough for several receive rounds; a consumer ignoring the bound would start more.
            await asyncio.sleep(0.3)
            held = active
            release.set()
            for _ in range(limit * 2 + 1):
                await done.next()

        assert held == limit
        assert peak == limit
        assert await harness.remaining() == 0

    async def test_shutdown_finishes_in_flight_work_and_leaves_the_rest(self, harness):
        started: asyncio.Queue[str] = asyncio.Queue()
        stopping = asyncio.Event()
        finished: list[str] = []
        cancelled: list[str] = []

        async def handler(delivery: Delivery) -> None:
            await started.put(payment_id(delivery))
            try:
                if payment_id(delivery) == "pi_quick":
                    # Still running when the stop arrives; finishes within the bound.
                    await stopping.wait()
                else:
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(payment_id(delivery))
                raise
            finished.append(payment_id(delivery))

        await harness.publisher().publish(
            [make_envelope(enrichment(p)) for p in ("pi_quick", "pi_stuck", "pi_waiting")]
        )
        consumer = Consumer(
            source=harness.source(),
            handler=handler,
            settings=settings(max_concurrency=2, shutdown_timeout_seconds=0.5),
        )
        running = asyncio.create_task(consumer.run())
        try:
            in_flight = {await asyncio.wait_for(started.get(), WAIT_SECONDS) for _ in range(2)}
            stopping.set()
        finally:
            await asyncio.wait_for(consumer.stop(), WAIT_SECONDS)
            await running

        assert in_flight == {"pi_quick", "pi_stuck"}
        assert finished == ["pi_quick"]
        assert cancelled == ["pi_stuck"]
        # What was not finished is back on the queue at once, for the next consumer.
        recorder = Recorder()
        async with consuming(harness, recorder):
            redelivered = {
                (payment_id(d), d.delivery_count) for d in [await recorder.next(), await recorder.next()]
            }
        assert redelivered == {("pi_stuck", 2), ("pi_waiting", 1)}
        assert await harness.remaining() == 0


def change(transaction_id: str = "txn-1") -> TransactionChanged:
    return TransactionChanged(
        transaction_id=transaction_id,
        event_id="evt-1",
        change=TransactionChange.REFUNDED,
        changed_at=datetime(2026, 3, 2, tzinfo=UTC),
    )


class TopicBusContract(BusContract):
    async def test_every_subscription_gets_a_copy_and_a_subject_filter_chooses(self, harness):
        request = make_envelope(enrichment())
        changed = make_envelope(change())
        recorder = Recorder()

        await harness.publisher().publish([request, changed])
        async with consuming(harness, recorder):
            deliveries = [await recorder.next(), await recorder.next()]

        received = sorted(delivery.envelope.message_id for delivery in deliveries)
        assert received == sorted([request.message_id, changed.message_id])
        sibling = [raw.message_id for raw in await harness.waiting_on("sibling")]
        assert sibling == [request.message_id, changed.message_id]
        assert [raw.message_id for raw in await harness.waiting_on("changes")] == [changed.message_id]

    async def test_a_retry_reaches_only_the_subscription_that_failed(self, harness):
        envelope = make_envelope(change())
        recorder = Recorder()

        async def fail_first_attempt(delivery: Delivery) -> None:
            if delivery.envelope.attempt == 1:
                raise RetryableError("cache store unavailable")
            await recorder(delivery)

        await harness.publisher().publish([envelope])
        async with consuming(harness, fail_first_attempt):
            retried = await recorder.next()

        assert retried.envelope.attempt == 2
        assert retried.message == change()
        # The topic routed the retry when it was enqueued, before `primary` received it: had another
        # subscription's rule let it through, it would be waiting there now beside the original.
        for other in ("sibling", "changes"):
            waiting = await harness.waiting_on(other)
            attempts = [(raw.message_id, raw.properties.get(ATTEMPT_PROPERTY)) for raw in waiting]
            assert attempts == [(envelope.message_id, 1)], other
        assert await harness.remaining() == 0
