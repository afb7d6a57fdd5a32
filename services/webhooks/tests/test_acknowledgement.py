"""Durable acknowledgement: recorded before the answer, applied after, once, whatever is killed when."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from stripe_fixtures import event, fixture, sign
from webhooks_fakes import Clock, build_service, container, counted, unapplied

from otcommon.store import InMemoryContainer, StoreError
from webhooks.journal import UNAPPLIED_QUERY, EventJournal
from webhooks.models import StripeEvent
from webhooks.processor import IGNORED_METRIC, EventProcessor, NotYetApplicableError, Outcome, ignored_counter
from webhooks.states import EventState, InvalidTransitionError

PATH = "/api/webhooks/stripe"


@dataclass
class RecordingApplier:
    """Counts what it is asked to apply; fails the first ``failures`` times when configured."""

    outcome: Outcome = field(default_factory=lambda: Outcome(EventState.APPLIED))
    failures: int = 0
    applied: list[str] = field(default_factory=list)

    async def apply(self, stripe_event: StripeEvent) -> Outcome:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Cosmos unreachable")
        self.applied.append(stripe_event.id)
        return self.outcome


class StuckApplier:
    """Never finishes: the process is killed while applying (its tasks are cancelled at shutdown)."""

    async def apply(self, stripe_event: StripeEvent) -> Outcome:
        await asyncio.Event().wait()
        raise AssertionError(stripe_event.id)


def delivery(n: int = 1, event_type: str = "refund.updated") -> str:
    return json.dumps(event(event_type, fixture("refund"), n=n))


async def deliver(service, body: str, *, settle: bool = True) -> tuple[int, dict]:
    """POST the body; with ``settle``, wait until the service's workers processed what it queued."""
    async with TestClient(TestServer(service.app())) as client:
        response = await client.post(PATH, data=body, headers={"Stripe-Signature": sign(body)})
        if settle:
            await service.processor.join()
        return response.status, await response.json()


def record(service, event_id: str = "evt_test000001") -> dict:
    return next(doc for doc in service.events.documents() if doc["id"] == event_id)


async def test_an_event_is_recorded_received_before_the_answer(settings):
    service = build_service(settings, StuckApplier())
    status, answer = await deliver(service, delivery(), settle=False)
    assert (status, answer) == (200, {"received": "evt_test000001", "duplicate": False})
    stored = record(service)
    assert stored["state"] == "received"
    assert stored["type"] == "refund.updated"
    assert stored["payload"]["data"]["object"]["id"] == fixture("refund")["id"]


async def test_after_the_answer_the_event_is_applied_and_settled(settings):
    applier = RecordingApplier()
    service = build_service(settings, applier)
    await deliver(service, delivery())
    assert applier.applied == ["evt_test000001"]
    assert record(service)["state"] == "applied"


async def test_a_redelivery_is_acknowledged_and_applied_once(settings):
    applier = RecordingApplier()
    service = build_service(settings, applier)
    await deliver(service, delivery())
    status, answer = await deliver(service, delivery())
    assert (status, answer["duplicate"]) == (200, True)
    assert applier.applied == ["evt_test000001"]
    assert len(list(service.events.documents())) == 1


async def test_killed_after_recording_the_sweep_applies_the_event(settings):
    service = build_service(settings, StuckApplier())
    await deliver(service, delivery(), settle=False)
    # The process dies here: its queue is gone. A new process shares only Cosmos.
    applier = RecordingApplier()
    restarted = EventProcessor(
        journal=EventJournal(service.events, clock=service.clock), applier=applier, max_attempts=3
    )
    assert await restarted.sweep() == 0  # too recent: the first process may still be applying it
    service.clock.advance(11)
    assert await restarted.sweep() == 1
    assert applier.applied == ["evt_test000001"]
    assert record(service)["state"] == "applied"
    assert await restarted.sweep() == 0


async def test_killed_after_recording_stripes_retry_applies_the_event_at_once(settings):
    service = build_service(settings, StuckApplier())
    await deliver(service, delivery(), settle=False)
    applier = RecordingApplier()
    restarted = build_service(settings, applier)
    restarted.events = service.events
    restarted.processor = EventProcessor(journal=EventJournal(service.events), applier=applier)
    status, answer = await deliver(restarted, delivery())
    assert (status, answer["duplicate"]) == (200, True)
    assert applier.applied == ["evt_test000001"]


async def test_a_failing_apply_is_retried_then_failed_with_its_reason(settings):
    applier = RecordingApplier(failures=5)
    service = build_service(settings, applier)
    await deliver(service, delivery())
    assert record(service)["state"] == "received"
    assert record(service)["attempts"] == 1
    service.clock.advance(11)
    await service.processor.sweep()
    await service.processor.sweep()
    stored = record(service)
    assert stored["state"] == "failed"
    assert stored["reason"] == "gave-up-after-retries: ConnectionError"
    assert applier.applied == []


async def test_a_failure_that_clears_is_applied_on_the_next_sweep(settings):
    applier = RecordingApplier(failures=1)
    service = build_service(settings, applier)
    await deliver(service, delivery())
    service.clock.advance(11)
    await service.processor.sweep()
    assert record(service)["state"] == "applied"
    assert applier.applied == ["evt_test000001"]


async def test_unknown_types_are_ignored_and_counted(settings):
    reader = InMemoryMetricReader()
    ignored = ignored_counter(MeterProvider(metric_readers=[reader]).get_meter("test"))
    service = build_service(settings, ignored=ignored)  # the applier that knows no type
    await deliver(service, delivery(1, "customer.created"))
    await deliver(service, delivery(2, "customer.created"))
    assert record(service)["state"] == "ignored"
    assert record(service)["reason"] == "unknown-event-type"
    assert service.processor.ignored_types == {"customer.created": 2}
    assert counted(reader, IGNORED_METRIC) == {(("type", "customer.created"),): 2}


class UnreachableContainer(InMemoryContainer):
    """A container whose writes fail, as Cosmos DB does when it cannot be reached."""

    async def create(self, document):
        del document
        raise StoreError("Cosmos DB unreachable")


async def test_an_event_that_cannot_be_recorded_is_a_503_so_stripe_retries(settings):
    service = build_service(settings)
    unreachable = UnreachableContainer("webhook-journal", partition_key_path="/bucket")
    service.processor = EventProcessor(journal=EventJournal(unreachable), applier=RecordingApplier())
    status, problem = await deliver(service, delivery())
    assert status == 503
    assert problem["status"] == 503


async def test_a_failed_event_is_applied_by_a_replay(settings):
    applier = RecordingApplier(failures=3)
    service = build_service(settings, applier)
    await deliver(service, delivery())
    service.clock.advance(11)
    await service.processor.sweep()
    await service.processor.sweep()
    assert record(service)["state"] == "failed"
    assert await service.processor.replay("evt_test000001") is EventState.APPLIED
    assert record(service)["state"] == "applied"
    assert record(service)["attempts"] == 0
    assert applier.applied == ["evt_test000001"]


async def test_an_applied_event_cannot_be_replayed(settings):
    service = build_service(settings, RecordingApplier())
    await deliver(service, delivery())
    with pytest.raises(InvalidTransitionError):
        await service.processor.replay("evt_test000001")


@dataclass
class PaymentNotStoredApplier:
    """The payment arrives (ingest stores it) only when the test says so."""

    stored: bool = False
    applied: list[str] = field(default_factory=list)

    async def apply(self, stripe_event: StripeEvent) -> Outcome:
        if not self.stored:
            raise NotYetApplicableError(stripe_event.id)
        self.applied.append(stripe_event.id)
        return Outcome(EventState.APPLIED)


async def test_an_event_for_a_payment_not_stored_yet_waits_without_using_up_attempts(settings):
    applier = PaymentNotStoredApplier()
    service = build_service(settings, applier)  # three attempts for real failures
    await deliver(service, delivery())
    for _ in range(5):
        service.clock.advance(3600)
        await service.processor.sweep()
    assert (record(service)["state"], record(service)["attempts"]) == ("received", 0)
    applier.stored = True
    await service.processor.sweep()
    assert record(service)["state"] == "applied"


async def test_an_event_whose_payment_never_arrives_fails_after_three_days(settings):
    service = build_service(settings, PaymentNotStoredApplier())
    await deliver(service, delivery())
    service.clock.advance(3 * 24 * 3600 + 1)
    await service.processor.sweep()
    stored = record(service)
    assert (stored["state"], stored["reason"]) == ("failed", "waited-too-long: NotYetApplicableError")


async def test_the_sweep_leaves_an_event_queued_here_to_the_workers(settings):
    # A backlog: the event waits in this process's queue for longer than the sweep age.
    applier = RecordingApplier()
    service = build_service(settings, applier)
    assert await service.processor.accept(StripeEvent.parse(delivery())) is True  # no worker runs yet
    service.clock.advance(11)
    assert await service.processor.sweep() == 0
    await service.processor.drain()
    assert applier.applied == ["evt_test000001"]
    assert record(service)["state"] == "applied"


class HeldCreates(InMemoryContainer):
    """Creates of one event id wait until released: a delivery whose record Cosmos DB is still writing."""

    def __init__(self, held_id: str) -> None:
        super().__init__("webhook-journal", partition_key_path="/bucket")
        self.held_id = held_id
        self.release = asyncio.Event()

    async def create(self, document):
        if document["id"] == self.held_id:
            await self.release.wait()
        return await super().create(document)


class ProbedProcessor(EventProcessor):
    """Signals when a worker has an event in hand and asks whether it may start applying it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.worker_ready = asyncio.Event()

    async def _answers_first(self) -> None:
        self.worker_ready.set()
        await super()._answers_first()


async def test_a_queued_event_waits_while_a_delivery_is_being_recorded(settings):
    del settings
    applier = RecordingApplier()
    slow = StripeEvent.parse(delivery(n=2))
    events = HeldCreates(held_id=slow.id)
    processor = ProbedProcessor(journal=EventJournal(events), applier=applier)
    answering = asyncio.create_task(processor.accept(slow))
    assert await processor.accept(StripeEvent.parse(delivery(n=1))) is True
    workers = asyncio.create_task(processor.serve(workers=1, sweep_every=3600))
    await processor.worker_ready.wait()
    # The worker holds evt 1, but evt 2's delivery is still waiting for its record: it is answered first.
    assert applier.applied == []
    events.release.set()
    assert await answering is True
    await processor.join()
    assert applier.applied == ["evt_test000001", "evt_test000002"]
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers


class HeldApplier(RecordingApplier):
    """Each apply starts (recorded), then waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []
        self.first_started = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, stripe_event: StripeEvent) -> Outcome:
        self.started.append(stripe_event.id)
        self.first_started.set()
        await self.release.wait()
        return await super().apply(stripe_event)


class CountedProcessor(EventProcessor):
    """Counts the workers that asked whether they may start applying."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.asking = 0
        self.all_asked = asyncio.Event()
        self.expected = 0

    async def _answers_first(self) -> None:
        self.asking += 1
        if self.asking == self.expected:
            self.all_asked.set()
        await super()._answers_first()


async def test_while_a_delivery_is_being_recorded_only_the_allowed_number_of_events_is_applied():
    applier = HeldApplier()
    slow = StripeEvent.parse(delivery(n=2))
    events = HeldCreates(held_id=slow.id)
    processor = CountedProcessor(journal=EventJournal(events), applier=applier, apply_while_answering=1)
    processor.expected = 2
    answering = asyncio.create_task(processor.accept(slow))
    for n in (1, 3):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    workers = asyncio.create_task(processor.serve(workers=2, sweep_every=3600))
    await processor.all_asked.wait()
    await applier.first_started.wait()
    # One event is applied beside the delivery being recorded; the other waits for the answer.
    assert applier.started == ["evt_test000001"]
    events.release.set()
    assert await answering is True
    applier.release.set()
    await processor.join()
    assert sorted(applier.applied) == ["evt_test000001", "evt_test000002", "evt_test000003"]
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers


class Monotonic:
    """A settable monotonic clock for the processor."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def peers(applier, *, monotonic=None) -> tuple[EventProcessor, EventProcessor, InMemoryContainer, Clock]:
    """Two processes' processors on one webhook-journal container (one Cosmos DB), sharing a clock."""
    clock = Clock()
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    one, other = (
        EventProcessor(
            journal=EventJournal(events, clock=clock),
            applier=applier,
            sweep_age=timedelta(seconds=10),
            monotonic=monotonic or Monotonic(),
        )
        for _ in range(2)
    )
    return one, other, events, clock


async def test_an_event_one_process_sweeps_is_not_swept_again_by_another_meanwhile():
    applier = HeldApplier()
    one, other, events, clock = peers(applier)
    await EventJournal(events, clock=clock).record(StripeEvent.parse(delivery()))  # its receiver died
    clock.advance(11)
    sweeping = asyncio.create_task(one.sweep())
    await applier.first_started.wait()
    assert await other.sweep() == 1  # tried: found claimed, left to the first
    applier.release.set()
    assert await sweeping == 1
    assert applier.started == ["evt_test000001"]
    assert applier.applied == ["evt_test000001"]
    stored = next(doc for doc in events.documents() if doc["id"] == "evt_test000001")
    assert stored["state"] == "applied"


async def test_an_event_late_behind_a_backlog_is_left_to_the_process_already_sweeping_it():
    applier = HeldApplier()
    monotonic = Monotonic()
    receiver, sweeper, events, clock = peers(applier, monotonic=monotonic)
    assert await receiver.accept(StripeEvent.parse(delivery())) is True  # queued; no worker free yet
    clock.advance(11)
    monotonic.now += 11
    sweeping = asyncio.create_task(sweeper.sweep())
    await applier.first_started.wait()
    await receiver.drain()  # its worker reaches the event at last: claimed elsewhere, so not applied here
    applier.release.set()
    await sweeping
    assert applier.started == ["evt_test000001"]
    stored = next(doc for doc in events.documents() if doc["id"] == "evt_test000001")
    assert stored["state"] == "applied"


@dataclass
class PreparingApplier(RecordingApplier):
    """Records each batch it is asked to read ahead for; fails that when configured."""

    prepared: list[list[str]] = field(default_factory=list)
    fail_preparing: bool = False

    async def prepared_for(self, events: list[StripeEvent]) -> PreparingApplier:
        self.prepared.append([each.id for each in events])
        if self.fail_preparing:
            raise ConnectionError("Cosmos unreachable")
        return self


async def run_queued(events: InMemoryContainer, applier: object, count: int, *, workers: int) -> None:
    """Record ``count`` deliveries, then let ``workers`` workers taking batches of ten apply them."""
    processor = EventProcessor(journal=EventJournal(events), applier=applier, batch_size=10)  # type: ignore[arg-type]
    for n in range(1, count + 1):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    serving = asyncio.create_task(processor.serve(workers=workers, sweep_every=3600))
    await processor.join()
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


async def apply_queued(applier: PreparingApplier, count: int) -> InMemoryContainer:
    """Record ``count`` deliveries, then let three workers taking batches of ten apply them."""
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    await run_queued(events, applier, count, workers=3)
    return events


async def test_queued_events_are_applied_as_one_batch_read_ahead_once():
    applier = PreparingApplier()
    events = await apply_queued(applier, 3)
    ids = ["evt_test000001", "evt_test000002", "evt_test000003"]
    assert applier.prepared == [ids]
    assert sorted(applier.applied) == ids
    assert {doc["id"]: doc["state"] for doc in events.documents()} == dict.fromkeys(ids, "applied")


async def test_when_reading_a_batch_ahead_fails_each_event_is_still_applied():
    applier = PreparingApplier(fail_preparing=True)
    events = await apply_queued(applier, 2)
    assert len(applier.prepared) == 1
    assert sorted(applier.applied) == ["evt_test000001", "evt_test000002"]
    assert {doc["state"] for doc in events.documents()} == {"applied"}


async def test_a_batch_applies_no_more_events_at_once_than_there_are_workers():
    applier = HeldApplier()
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    processor = CountedProcessor(journal=EventJournal(events), applier=applier, batch_size=10)
    processor.expected = 3
    for n in (1, 2, 3):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    workers = asyncio.create_task(processor.serve(workers=2, sweep_every=3600))
    await processor.all_asked.wait()
    # One worker took all three; two are applied at once, the third waits for one of them.
    assert applier.started == ["evt_test000001", "evt_test000002"]
    applier.release.set()
    await processor.join()
    assert sorted(applier.applied) == ["evt_test000001", "evt_test000002", "evt_test000003"]
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers


class CountedWrites(InMemoryContainer):
    """The webhook-journal fake, counting single patches and transactional batches."""

    def __init__(self) -> None:
        super().__init__("webhook-journal", partition_key_path="/bucket")
        self.patches = 0
        self.batches = 0

    async def patch(self, document_id, **options):
        self.patches += 1
        return await super().patch(document_id, **options)

    async def write_batch(self, writes, **options):
        self.batches += 1
        return await super().write_batch(writes, **options)


async def test_the_records_of_a_batch_applied_are_settled_together():
    applier = RecordingApplier()
    events = CountedWrites()
    processor = EventProcessor(journal=EventJournal(events), applier=applier, batch_size=10)
    ids = [f"evt_test{n:06d}" for n in (2, 9, 16, 21)]  # their records share a bucket
    for n in (2, 9, 16, 21):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    workers = asyncio.create_task(processor.serve(workers=1, sweep_every=3600))
    await processor.join()
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert sorted(applier.applied) == ids
    assert {doc["id"]: doc["state"] for doc in events.documents()} == dict.fromkeys(ids, "applied")
    assert (events.patches, events.batches) == (0, 1)


class OneStuckApplier(RecordingApplier):
    """Applies every event but one, which never finishes (the workers are stopped meanwhile)."""

    def __init__(self, stuck_id: str, expected: int) -> None:
        super().__init__()
        self.stuck_id = stuck_id
        self.expected = expected
        self.started = 0
        self.all_started = asyncio.Event()
        self.unstick = asyncio.Event()

    async def apply(self, stripe_event: StripeEvent) -> Outcome:
        self.started += 1
        if self.started == self.expected:
            self.all_started.set()
        if stripe_event.id == self.stuck_id:
            await self.unstick.wait()
        return await super().apply(stripe_event)


async def test_events_of_a_batch_applied_before_the_workers_stop_are_settled():
    applier = OneStuckApplier(stuck_id="evt_test000009", expected=3)
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    processor = EventProcessor(journal=EventJournal(events), applier=applier, batch_size=10)
    for n in (2, 9, 16):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    workers = asyncio.create_task(processor.serve(workers=3, sweep_every=3600))  # one takes the three
    await applier.all_started.wait()
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert {doc["id"]: doc["state"] for doc in events.documents()} == {
        "evt_test000002": "applied",
        "evt_test000009": "received",  # left to the sweep
        "evt_test000016": "applied",
    }


async def test_events_of_a_batch_applied_are_settled_while_another_of_it_is_still_applied():
    applier = OneStuckApplier(stuck_id="evt_test000009", expected=3)
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    processor = EventProcessor(
        journal=EventJournal(events), applier=applier, batch_size=10, sweep_age=timedelta(seconds=1)
    )
    for n in (2, 9, 16):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    workers = asyncio.create_task(processor.serve(workers=3, sweep_every=3600))
    await applier.all_started.wait()
    expected = {"evt_test000002": "applied", "evt_test000009": "received", "evt_test000016": "applied"}
    async with asyncio.timeout(10):  # a bound on the wait, not a measurement
        while {doc["id"]: doc["state"] for doc in events.documents()} != expected:
            await asyncio.sleep(0.01)
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers


class FirstPatchHeld(InMemoryContainer):
    """The webhook-journal fake whose first patch waits until released."""

    def __init__(self) -> None:
        super().__init__("webhook-journal", partition_key_path="/bucket")
        self.first_patch_started = asyncio.Event()
        self.release = asyncio.Event()

    async def patch(self, document_id, **options):
        if not self.first_patch_started.is_set():
            self.first_patch_started.set()
            await self.release.wait()
        return await super().patch(document_id, **options)


async def test_an_event_applied_while_the_batch_before_it_is_being_settled_is_settled_too():
    applier = OneStuckApplier(stuck_id="evt_test000009", expected=2)
    events = FirstPatchHeld()
    processor = EventProcessor(
        journal=EventJournal(events), applier=applier, batch_size=10, sweep_age=timedelta(seconds=1)
    )
    for n in (2, 9):
        assert await processor.accept(StripeEvent.parse(delivery(n=n))) is True
    workers = asyncio.create_task(processor.serve(workers=3, sweep_every=3600))
    await events.first_patch_started.wait()  # evt 2 applied, its settle under way; evt 9 still applying
    applier.stuck_id = ""
    applier.unstick.set()
    while "evt_test000009" not in applier.applied:
        await asyncio.sleep(0)
    for _ in range(10):
        await asyncio.sleep(0)  # the batch ends while evt 2's settle is still under way
    events.release.set()
    await processor.join()
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert {doc["id"]: doc["state"] for doc in events.documents()} == {
        "evt_test000002": "applied",
        "evt_test000009": "applied",
    }


class GatheringProcessor(EventProcessor):
    """Signals when a worker starts gathering a batch (it takes a queued event at once, then waits)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gathering = asyncio.Event()

    async def _next_batch(self):
        self.gathering.set()
        return await super()._next_batch()


async def test_an_event_a_worker_was_gathering_a_batch_for_is_drained_at_shutdown():
    applier = RecordingApplier()
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    processor = GatheringProcessor(
        journal=EventJournal(events), applier=applier, batch_size=10, batch_wait=3600
    )
    assert await processor.accept(StripeEvent.parse(delivery())) is True
    workers = asyncio.create_task(processor.serve(workers=1, sweep_every=3600))
    await processor.gathering.wait()  # the worker holds the event, waiting for more to join it
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    await processor.drain()
    await processor.join()
    assert applier.applied == ["evt_test000001"]


class CountedReads(InMemoryContainer):
    """The webhook-journal fake, counting point reads."""

    def __init__(self) -> None:
        super().__init__("webhook-journal", partition_key_path="/bucket")
        self.reads = 0

    async def read(self, document_id, **options):
        self.reads += 1
        return await super().read(document_id, **options)


async def test_an_event_late_behind_a_backlog_is_claimed_by_its_creates_etag_without_a_read():
    applier = RecordingApplier()
    events = CountedReads()
    monotonic = Monotonic()
    processor = EventProcessor(
        journal=EventJournal(events), applier=applier, sweep_age=timedelta(seconds=10), monotonic=monotonic
    )
    assert await processor.accept(StripeEvent.parse(delivery())) is True
    monotonic.now += 6  # longer than half the sweep age in the queue
    await processor.drain()
    assert applier.applied == ["evt_test000001"]
    [stored] = events.documents()
    assert (stored["state"], stored["claimedAt"] is not None) == ("applied", True)
    assert events.reads == 0


class HoldingApplier(RecordingApplier):
    """Prepared for a batch, holds each applied event's message until ``send_held``; may fail that send."""

    def __init__(self, events: InMemoryContainer, *, send_fails: bool = False) -> None:
        super().__init__()
        self.events = events
        self.send_fails = send_fails
        self.held: list[str] = []
        self.sends: list[list[str]] = []
        self.states_at_send: dict[str, str] = {}

    async def prepared_for(self, events: list[StripeEvent]) -> HoldingApplier:
        del events
        return self

    async def apply(self, stripe_event: StripeEvent) -> Outcome:
        outcome = await super().apply(stripe_event)
        self.held.append(stripe_event.id)
        return outcome

    async def send_held(self) -> set[str]:
        taken, self.held = self.held, []
        if not taken:
            return set()
        self.sends.append(taken)
        self.states_at_send.update({doc["id"]: doc["state"] for doc in self.events.documents()})
        return set(taken) if self.send_fails else set()


async def apply_held(applier_of, count: int) -> tuple[HoldingApplier, InMemoryContainer]:
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    applier = applier_of(events)
    await run_queued(events, applier, count, workers=1)
    return applier, events


async def test_a_batchs_held_messages_go_in_one_send_before_its_records_are_settled():
    applier, events = await apply_held(HoldingApplier, 3)
    ids = ["evt_test000001", "evt_test000002", "evt_test000003"]
    assert [sorted(send) for send in applier.sends] == [ids]
    assert applier.states_at_send == dict.fromkeys(ids, "received")
    assert {doc["id"]: doc["state"] for doc in events.documents()} == dict.fromkeys(ids, "applied")


async def test_an_event_whose_held_messages_were_not_sent_is_left_unsettled_for_the_sweep():
    applier, events = await apply_held(lambda events: HoldingApplier(events, send_fails=True), 2)
    assert sorted(applier.applied) == ["evt_test000001", "evt_test000002"]
    assert {doc["state"] for doc in events.documents()} == {"received"}
