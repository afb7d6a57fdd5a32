from datetime import UTC, datetime

import pytest
from azure.servicebus import ServiceBusMessageBatch
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
)

from otcommon.bus import Backoff, PublishError, ServiceBusPublisher, is_transient_error
from otcommon.messages import PaymentEnrichmentRequested, RawMessage, make_envelope


def envelopes(count):
    return [
        make_envelope(
            PaymentEnrichmentRequested(
                payment_id=f"pi_{n}",
                transaction_id=f"txn-{n}",
                event_id="evt-1",
                requested_at=datetime(2026, 3, 1, tzinfo=UTC),
            )
        )
        for n in range(count)
    ]


class FakeSender:
    """Stands in for the SDK sender: real batches, scripted failures, sent batches recorded."""

    def __init__(self, *, batch_bytes=1024, failures=()):
        self.batch_bytes = batch_bytes
        self.failures = list(failures)
        self.sent: list[list[str]] = []
        self.send_calls = 0
        self.timeouts = []
        self.closed = False

    async def create_message_batch(self, max_size_in_bytes=None):
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or self.batch_bytes)

    async def send_messages(self, message, *, timeout=None):  # the SDK's signature
        self.send_calls += 1
        self.timeouts.append(timeout)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append([m.message_id for m in message._messages])

    async def close(self):
        self.closed = True


class Sleeps:
    def __init__(self):
        self.delays = []

    async def __call__(self, delay):
        self.delays.append(delay)


def publisher(sender, **kwargs):
    sleeps = Sleeps()
    return ServiceBusPublisher(sender=sender, sleep=sleeps, **kwargs), sleeps


async def test_messages_that_fit_go_in_one_batch():
    sender = FakeSender(batch_bytes=256 * 1024)
    batch = envelopes(5)

    await publisher(sender)[0].publish(batch)

    assert sender.sent == [[e.message_id for e in batch]]
    # Bounded: the SDK's own timeout covers its internal retries.
    assert sender.timeouts == [30.0]


async def test_full_batches_are_split_without_losing_or_reordering_messages():
    sender = FakeSender(batch_bytes=1500)
    batch = envelopes(12)

    await publisher(sender)[0].publish(batch)

    assert len(sender.sent) > 1
    assert [message_id for sent in sender.sent for message_id in sent] == [e.message_id for e in batch]


async def test_nothing_to_publish_sends_nothing():
    sender = FakeSender()

    await publisher(sender)[0].publish([])

    assert sender.send_calls == 0


async def test_a_message_larger_than_a_batch_is_refused():
    sender = FakeSender(batch_bytes=200)

    with pytest.raises(PublishError, match="larger than a batch") as caught:
        await publisher(sender)[0].publish_raw([RawMessage(body=b"x" * 500, subject="T", message_id="big")])

    assert caught.value.sent == 0
    assert sender.send_calls == 0


@pytest.mark.parametrize(
    "error",
    [ServiceBusConnectionError(), ServiceBusServerBusyError(), OperationTimeoutError(), TimeoutError()],
    ids=["connection", "server-busy", "timeout", "os-timeout"],
)
async def test_transient_errors_are_retried_with_growing_backoff(error):
    sender = FakeSender(failures=[error, error])
    pub, sleeps = publisher(sender, backoff=Backoff(initial_seconds=1.0, maximum_seconds=10.0, jitter=0.0))

    await pub.publish(envelopes(1))

    assert sender.send_calls == 3
    assert len(sender.sent) == 1
    assert sleeps.delays == [1.0, 2.0]


@pytest.mark.parametrize(
    "error",
    [ServiceBusAuthorizationError(), MessagingEntityNotFoundError(), ValueError("bad")],
    ids=["authorization", "entity-not-found", "bug"],
)
async def test_permanent_errors_are_not_retried(error):
    sender = FakeSender(failures=[error])
    pub, sleeps = publisher(sender)

    with pytest.raises(PublishError) as caught:
        await pub.publish(envelopes(1))

    assert caught.value.__cause__ is error
    assert sender.send_calls == 1
    assert sleeps.delays == []


async def test_gives_up_after_max_attempts_and_reports_what_was_sent():
    sender = FakeSender(batch_bytes=1500, failures=[])
    pub, _ = publisher(sender, max_attempts=2)
    batch = envelopes(12)
    original_send = sender.send_messages

    async def fail_after_first_batch(message, *, timeout=None):  # the SDK's signature
        if sender.sent:
            raise ServiceBusServerBusyError
        await original_send(message, timeout=timeout)

    sender.send_messages = fail_after_first_batch

    with pytest.raises(PublishError, match="after 2 attempts") as caught:
        await pub.publish(batch)

    assert caught.value.sent == len(sender.sent[0])


async def test_jitter_keeps_delays_within_the_backoff_ceiling():
    backoff = Backoff(initial_seconds=1.0, maximum_seconds=8.0, jitter=0.5)

    delays = [backoff.delay_seconds(attempt=attempt, rand=lambda: 0.999) for attempt in range(1, 8)]
    ceilings = [backoff.delay_seconds(attempt=attempt, rand=lambda: 0.0) for attempt in range(1, 8)]

    assert ceilings == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert all(ceiling / 2 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert backoff.delay_seconds(attempt=10_000) <= 8.0


def test_authorization_failures_are_not_transient_even_though_the_sdk_flags_them():
    assert not is_transient_error(ServiceBusAuthorizationError())
    assert is_transient_error(ServiceBusConnectionError())
    assert not is_transient_error(RuntimeError())


async def test_close_closes_the_sender():
    sender = FakeSender()

    await publisher(sender)[0].close()

    assert sender.closed
