import asyncio
from datetime import UTC, datetime

import pytest
import structlog
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusConnectionError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otcommon.bus import (
    Backoff,
    Consumer,
    ConsumerSettings,
    InMemoryBus,
    PermanentError,
    RetryableError,
    RetryPolicy,
)
from otcommon.bus.consumer import TASKS_STARTED_PER_TURN
from otcommon.messages import PaymentEnrichmentRequested, make_envelope

QUEUE = "enrichment"
WAIT_SECONDS = 5.0


def enrichment(payment_id="pi_1"):
    return PaymentEnrichmentRequested(
        payment_id=payment_id,
        transaction_id="txn-1",
        event_id="evt-1",
        requested_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def settings(**overrides):
    fields = {
        "entity_name": QUEUE,
        "max_wait_seconds": 0.1,
        "retry_policy": RetryPolicy(
            max_attempts=2, backoff=Backoff(initial_seconds=0.01, maximum_seconds=0.01)
        ),
        "receive_backoff": Backoff(initial_seconds=0.01, maximum_seconds=0.01),
    }
    return ConsumerSettings(**(fields | overrides))


async def consume_until(bus, handler, done: asyncio.Event, **kwargs):
    consumer = Consumer(source=bus.source(queue=QUEUE), handler=handler, settings=settings(), **kwargs)
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(done.wait(), WAIT_SECONDS)
    await asyncio.wait_for(consumer.stop(), WAIT_SECONDS)
    await running


def summaries(logs):
    return [entry for entry in logs if entry["event"] == "message handled"]


async def test_one_summary_line_per_message_with_its_ids_bound():
    bus = InMemoryBus()
    first = make_envelope(enrichment("pi_1"), correlation_id="run-1")
    second = make_envelope(enrichment("pi_2"), correlation_id="run-2")
    await bus.publisher(queue=QUEUE).publish([first, second])
    seen = []
    done = asyncio.Event()

    async def handler(delivery):
        seen.append(delivery)
        if len(seen) == 2:
            done.set()

    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await consume_until(bus, handler, done)

    lines = summaries(logs)
    assert len(lines) == 2
    assert {(line["message_id"], line["correlation_id"]) for line in lines} == {
        (first.message_id, "run-1"),
        (second.message_id, "run-2"),
    }
    assert all(line["outcome"] == "complete" and line["log_level"] == "info" for line in lines)
    assert all(line["message_type"] == "PaymentEnrichmentRequested" for line in lines)
    # Context does not leak out of the per-message unit of work.
    assert "message_id" not in structlog.contextvars.get_contextvars()


async def test_a_large_receive_starts_its_handlers_in_turns_with_the_rest_of_the_loop():
    # A backlog's receive: a thousand messages at once. The first handler asks for something every
    # handler needs (a call_soon stands in for it); it must not wait until all thousand have started.
    bus = InMemoryBus()
    count = 4 * TASKS_STARTED_PER_TURN
    await bus.publisher(queue=QUEUE).publish([make_envelope(enrichment(f"pi_{n}")) for n in range(count)])
    started: list[str] = []
    started_when_served: list[int] = []
    done = asyncio.Event()
    release = asyncio.Event()

    async def handler(delivery):
        if not started:
            asyncio.get_running_loop().call_soon(lambda: started_when_served.append(len(started)))
        started.append(delivery.message.payment_id)
        if len(started) == count:
            done.set()
        await release.wait()

    consumer = Consumer(
        source=bus.source(queue=QUEUE), handler=handler, settings=settings(max_concurrency=count)
    )
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(done.wait(), WAIT_SECONDS)
    release.set()
    await asyncio.wait_for(consumer.stop(), WAIT_SECONDS)
    await running

    assert started_when_served[0] <= TASKS_STARTED_PER_TURN


async def test_unexpected_error_is_logged_without_its_text():
    bus = InMemoryBus(max_delivery_count=1)
    await bus.publisher(queue=QUEUE).publish([make_envelope(enrichment())])
    done = asyncio.Event()

    async def handler(delivery):
        done.set()
        raise ValueError("customer jane.doe@example.com has no phone")

    with structlog.testing.capture_logs() as logs:
        await consume_until(bus, handler, done)

    [line] = summaries(logs)
    assert line["outcome"] == "abandon"
    assert line["reason"] == "UnexpectedError"
    assert line["error_type"] == "ValueError"
    assert line["error_origin"].startswith("test_bus_consumer.py:")
    assert line["log_level"] == "error"
    assert "jane.doe" not in repr(logs)
    # Abandoned past the max delivery count: the broker, not the consumer, dead-letters the poison message.
    [dead] = bus.dead_letters(queue=QUEUE)
    assert dead.reason == "MaxDeliveryCountExceeded"


async def test_dead_letter_and_reschedule_are_logged_with_their_reason():
    bus = InMemoryBus()
    await bus.publisher(queue=QUEUE).publish(
        [make_envelope(enrichment("pi_1")), make_envelope(enrichment("pi_2"))]
    )
    done = asyncio.Event()
    calls = 0

    async def handler(delivery):
        nonlocal calls
        calls += 1
        if delivery.message.payment_id == "pi_1":
            raise PermanentError("no account owns it", reason="PaymentNotFound")
        if delivery.envelope.attempt == 1:
            raise RetryableError("rate limited", retry_after_seconds=0.01)
        done.set()

    with structlog.testing.capture_logs() as logs:
        await consume_until(bus, handler, done)

    by_outcome = {line["outcome"]: line for line in summaries(logs)}
    assert by_outcome["dead_letter"]["reason"] == "PaymentNotFound"
    assert by_outcome["dead_letter"]["log_level"] == "warning"
    assert by_outcome["reschedule"]["delay_seconds"] == 0.01
    assert by_outcome["complete"]["attempt"] == 2


async def test_handler_span_continues_the_publishers_trace():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    bus = InMemoryBus()
    with tracer.start_as_current_span("ingest run") as publishing:
        await bus.publisher(queue=QUEUE).publish([make_envelope(enrichment())])
    done = asyncio.Event()
    handler_spans = []

    async def handler(delivery):
        handler_spans.append(trace.get_current_span().get_span_context())
        done.set()

    await consume_until(bus, handler, done, tracer=tracer)

    [process] = [span for span in exporter.get_finished_spans() if span.name == f"{QUEUE} process"]
    assert process.kind is trace.SpanKind.CONSUMER
    assert process.context.trace_id == publishing.get_span_context().trace_id
    assert process.parent is not None
    assert process.parent.span_id == publishing.get_span_context().span_id
    assert handler_spans == [process.context]


class FlakySource:
    """A source whose receive fails with the given errors before delegating."""

    def __init__(self, inner, errors):
        self._inner = inner
        self._errors = list(errors)
        self.closed = False
        self.receiving = asyncio.Event()

    async def receive(self, *, max_messages, max_wait_seconds):
        self.receiving.set()
        if self._errors:
            raise self._errors.pop(0)
        return await self._inner.receive(max_messages=max_messages, max_wait_seconds=max_wait_seconds)

    async def close(self):
        self.closed = True
        await self._inner.close()


async def test_transient_receive_errors_are_retried():
    bus = InMemoryBus()
    await bus.publisher(queue=QUEUE).publish([make_envelope(enrichment())])
    source = FlakySource(bus.source(queue=QUEUE), [ServiceBusConnectionError(), TimeoutError()])
    done = asyncio.Event()

    async def handler(delivery):
        done.set()

    consumer = Consumer(source=source, handler=handler, settings=settings())
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(done.wait(), WAIT_SECONDS)
    await asyncio.wait_for(consumer.stop(), WAIT_SECONDS)
    await running

    assert source.closed
    assert bus.active_messages(queue=QUEUE) == []


async def test_permanent_receive_error_stops_the_consumer_and_closes_the_source():
    source = FlakySource(InMemoryBus().source(queue=QUEUE), [MessagingEntityNotFoundError()])

    async def handler(delivery):
        raise AssertionError("nothing to handle")

    consumer = Consumer(source=source, handler=handler, settings=settings())
    with pytest.raises(MessagingEntityNotFoundError):
        await asyncio.wait_for(consumer.run(), WAIT_SECONDS)

    assert source.closed


async def test_stop_before_any_message_returns_promptly():
    source = FlakySource(InMemoryBus().source(queue=QUEUE), [])
    consumer = Consumer(source=source, handler=None, settings=settings(max_wait_seconds=30.0))
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(source.receiving.wait(), WAIT_SECONDS)

    # The receive waits up to 30 s for a message; stop must not wait for it.
    await asyncio.wait_for(consumer.stop(), WAIT_SECONDS)
    await running
    assert source.closed


def test_settings_reject_a_zero_concurrency():
    with pytest.raises(ValueError, match="max_concurrency"):
        ConsumerSettings(entity_name=QUEUE, max_concurrency=0)


async def test_cancelling_run_still_releases_messages_and_closes_the_source():
    bus = InMemoryBus()
    await bus.publisher(queue=QUEUE).publish([make_envelope(enrichment())])
    source = FlakySource(bus.source(queue=QUEUE), [])
    started = asyncio.Event()

    async def stuck(delivery):
        started.set()
        await asyncio.Event().wait()

    consumer = Consumer(source=source, handler=stuck, settings=settings(shutdown_timeout_seconds=0.1))
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), WAIT_SECONDS)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert source.closed
    [again] = await bus.source(queue=QUEUE).receive(max_messages=1, max_wait_seconds=0.01)
    assert again.delivery_count == 2
