"""From recorded event to applied change: an in-process queue for speed, a sweep for crash safety.

The handler records an event, then hands it to the queue and answers. Workers apply it and settle
the record under the ETag its create returned. A process killed before settling leaves the record
``received``; the sweep (on every replica, every few seconds) finds such records, claims each under
its ETag and applies it, and a redelivery by Stripe re-queues them at once. Applying is idempotent,
so a crash after the change but before settling repeats nothing visible but the announcement (with
the same message id), and the claim keeps two replicas from applying one record at once.

In a set of answer and apply processes (``webhooks/handoff.py``), an answer process's processor
hands each event to an apply process (``hand_over_to``) instead of queueing it, and the apply
process's processor queues it (``take_over``) as if it had recorded it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog
from opentelemetry import metrics

from webhooks.journal import Settle, event_of
from webhooks.states import STATE_FIELD, EventState, SettleReason

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from otcommon.store import Document
    from webhooks.journal import EventJournal
    from webhooks.models import StripeEvent

log = structlog.get_logger("webhooks.processor")

IGNORED_METRIC = "webhooks.events_ignored"


def ignored_counter(meter: metrics.Meter | None = None) -> metrics.Counter:
    """The counter of events settled ``ignored``, by type (the process's meter unless one is given)."""
    return (meter or metrics.get_meter("webhooks")).create_counter(
        IGNORED_METRIC,
        unit="{event}",
        description="Stripe events settled ignored (a type nothing here applies), by event type.",
    )


_IGNORED = ignored_counter()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How applying an event ended: ``applied``, or ``ignored`` / ``failed`` with a reason."""

    state: EventState
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """An event waiting for a worker: its id; when this process just recorded it, the event and the ETag."""

    event_id: str
    event: StripeEvent | None = None
    etag: str | None = None
    queued_at: float = 0.0
    """When it was queued (the processor's monotonic clock)."""


DEFAULT_WORKERS = 8
"""Events applied at once unless ``serve`` is given another number."""

SETTLE_EVERY_PER_SWEEP_AGE = 20
"""A worker settles the records its batch applied every sweep age / 20 (0.5 s at the default 10 s)."""
MIN_SETTLE_EVERY = 0.05


class NotYetApplicableError(Exception):
    """The event is about something not stored yet (a payment ingest has not read): wait, not a fault."""


class EventApplier(Protocol):
    """Turns one event into its change; idempotent (the same event twice changes nothing more)."""

    async def apply(self, event: StripeEvent) -> Outcome: ...


@runtime_checkable
class PreparesBatches(Protocol):
    """An applier that can read what a batch of events needs at once, before they are applied."""

    async def prepared_for(self, events: Sequence[StripeEvent]) -> EventApplier:
        """An applier for these events (and any other: what was not read ahead is read as usual)."""
        ...


@runtime_checkable
class HoldsMessages(Protocol):
    """An applier (prepared for a batch) whose applies' messages wait to be sent together."""

    async def send_held(self) -> set[str]:
        """Send what the applies published since the last call; the ids of the events it failed to send."""
        ...


class IgnoreAll:
    """The applier that knows no event type."""

    async def apply(self, event: StripeEvent) -> Outcome:
        del event
        return Outcome(EventState.IGNORED, SettleReason.UNKNOWN_TYPE.value)


class EventProcessor:
    """Accepts verified events durably and applies them after the answer."""

    def __init__(  # noqa: PLR0913 - keyword-only, each with a default
        self,
        *,
        journal: EventJournal,
        applier: EventApplier,
        max_attempts: int = 10,
        sweep_age: timedelta = timedelta(seconds=10),
        wait_limit: timedelta = timedelta(days=3),
        queue_size: int = 10_000,
        apply_while_answering: int = 0,
        batch_size: int = 1,
        batch_wait: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        ignored: metrics.Counter | None = None,
    ) -> None:
        self._journal = journal
        self._applier = applier
        self._max_attempts = max_attempts
        self._sweep_age = sweep_age
        self._wait_limit = wait_limit
        # A fresh event travels with its id and its record's ETag: the record was just created
        # ``received``, so the worker need not read it back, and settles it by one guarded patch. A
        # redelivery travels as its id alone and is read (it may be settled).
        self._queue: asyncio.Queue[Queued] = asyncio.Queue(maxsize=queue_size)
        self._held: set[str] = set()
        """Ids queued or being applied here: the sweep leaves them to the workers."""
        self._recording = 0
        self._applying = 0
        self._apply_limit = DEFAULT_WORKERS
        self._apply_while_answering = apply_while_answering
        # A worker takes up to ``batch_size`` queued events, after waiting ``batch_wait`` seconds for
        # more to arrive, and reads what they need at once (``PreparesBatches``); one worker gathers
        # at a time, so that idle workers do not split a burst into batches of one.
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        # A batch's applied records are settled at least this often (well inside half the sweep
        # age, the margin a fresh event's apply and settle have before another process may sweep it).
        self._settle_every = max(sweep_age.total_seconds() / SETTLE_EVERY_PER_SWEEP_AGE, MIN_SETTLE_EVERY)
        self._gathering = asyncio.Lock()
        self._monotonic = monotonic
        self._gate_changed = asyncio.Event()
        self.ignored_types: Counter[str] = Counter()
        """Events settled ``ignored``, by type: what Stripe sends that nothing uses (also exported)."""
        self._ignored = ignored or _IGNORED
        self._hand_off: Callable[[Queued], bool] | None = None

    async def accept(self, event: StripeEvent) -> bool:
        """Record the event and queue it; False for a redelivery (queued again in case it is unapplied)."""
        self._recording += 1
        try:
            etag = await self._journal.record(event)
        finally:
            self._recording -= 1
            if not self._recording:
                self._gate_changed.set()
        fresh = etag is not None
        queued = Queued(event.id, event, etag, self._monotonic()) if fresh else Queued(event.id)
        if self._hand_off is not None:
            if not self._hand_off(queued):
                log.warning("apply processes not reachable; the sweep applies the event", event_id=event.id)
            return fresh
        if event.id in self._held:
            return fresh
        try:
            self._queue.put_nowait(queued)
        except asyncio.QueueFull:
            log.warning("apply queue full; the sweep applies the event", event_id=event.id)
        else:
            self._held.add(event.id)
        return fresh

    def hand_over_to(self, hand_off: Callable[[Queued], bool]) -> None:
        """Answer only: each event recorded (or redelivered) goes to ``hand_off`` (an apply process).

        ``hand_off`` returns False when the event cannot go; it is recorded, so the sweep applies it.
        """
        self._hand_off = hand_off

    async def take_over(self, queued: Queued) -> None:
        """Queue an event an answer process recorded (or saw redelivered), waiting while the queue is full."""
        if queued.event_id in self._held:
            return
        self._held.add(queued.event_id)
        try:
            await self._queue.put(queued)
        except asyncio.CancelledError:
            self._held.discard(queued.event_id)
            raise

    async def recover(self, event: StripeEvent) -> tuple[bool, EventState]:
        """Record an event read back from Stripe and apply it now, as a delivery would be.

        Whether it was recorded now (False: a delivery or an earlier replay had recorded it), and the
        state it is left in; the record makes a later delivery of the same event a duplicate.
        """
        etag = await self._journal.record(event)
        return etag is not None, await self.process(event.id)

    async def recorded_state(self, event_id: str) -> EventState | None:
        """The state of a recorded event; None when it was never recorded (or its record expired)."""
        return await self._journal.state_of(event_id)

    async def process(
        self,
        event_id: str,
        *,
        just_recorded: StripeEvent | None = None,
        recorded_etag: str | None = None,
        applier: EventApplier | None = None,
        claim: bool = False,
        settles: list[Settle] | None = None,
    ) -> EventState:
        """Apply one recorded event unless it is settled; the state it is left in.

        ``just_recorded``: the event this process recorded ``received`` a moment ago, applied without
        reading its record back (applying is idempotent, and settling checks the state it moves from);
        ``recorded_etag``, that record's ETag, lets the settle skip its read. ``applier``: the one
        prepared for the batch this event is in. ``claim``: claim the just recorded event first, by
        that ETag (it waited long enough that another process's sweep may take it). ``settles``: where
        a settle by ETag is left for the caller to send with its batch's others (the state returned
        is then the one it will be settled to).
        """
        if just_recorded is None:
            record = await self._journal.read(event_id)
            if record[STATE_FIELD] != EventState.RECEIVED.value:
                return EventState(record[STATE_FIELD])
            recorded_etag = await self._journal.claim(record, hold=self._sweep_age)
            if recorded_etag is None:
                return EventState.RECEIVED  # another process is applying it right now
            event = event_of(record)
        else:
            event = just_recorded
            if claim and recorded_etag is not None:
                recorded_etag = await self._journal.claim_as_recorded(event_id, recorded_etag=recorded_etag)
                if recorded_etag is None:
                    return EventState.RECEIVED  # claimed or settled elsewhere since it was recorded
        try:
            outcome = await (applier or self._applier).apply(event)
        except NotYetApplicableError as error:
            # Rare (a payment not ingested yet): the record says how long the event has waited.
            return await self._wait_or_fail(await self._journal.read(event_id), error)
        except Exception as error:  # noqa: BLE001 - any failure is retried, then recorded with its cause
            return await self._after_failure(event, error)
        return await self._settle_applied(event, outcome, recorded_etag, applier, settles)

    async def _settle_applied(
        self,
        event: StripeEvent,
        outcome: Outcome,
        recorded_etag: str | None,
        applier: object,
        settles: list[Settle] | None,
    ) -> EventState:
        # Left in ``settles`` for the batch's next round, which sends held messages first
        # (``_process_batch``); or settled now, after sending any held messages. Not settled when
        # they could not be sent: the record stays received and the sweep applies it again.
        if settles is not None and recorded_etag is not None:
            settles.append(Settle(event.id, outcome.state, outcome.reason, recorded_etag))
        elif isinstance(applier, HoldsMessages) and event.id in await applier.send_held():
            return EventState.RECEIVED
        else:
            await self._journal.settle(
                event.id, outcome.state, reason=outcome.reason, recorded_etag=recorded_etag
            )
        if outcome.state is EventState.IGNORED:
            self.ignored_types[event.type] += 1
            self._ignored.add(1, {"type": event.type})
        log.info("webhook event settled", event_id=event.id, type=event.type, state=outcome.state.value)
        return outcome.state

    async def _wait_or_fail(self, record: Document, error: NotYetApplicableError) -> EventState:
        # As long as Stripe would retry (three days), the missing payment may still arrive: each sweep
        # tries again without counting an attempt; after that the event fails with the reason.
        if self._journal.age_of(record) < self._wait_limit:
            await self._journal.release(record)
            return EventState.RECEIVED
        reason = f"{SettleReason.WAITED_TOO_LONG.value}: {type(error).__name__}"
        await self._journal.settle(str(record["id"]), EventState.FAILED, reason=reason)
        return EventState.FAILED

    async def _after_failure(self, event: StripeEvent, error: Exception) -> EventState:
        attempts = await self._journal.count_attempt(event.id)
        log.warning(
            "webhook event not applied", event_id=event.id, attempts=attempts, error=type(error).__name__
        )
        if attempts < self._max_attempts:
            return EventState.RECEIVED
        reason = f"{SettleReason.GAVE_UP.value}: {type(error).__name__}"
        await self._journal.settle(event.id, EventState.FAILED, reason=reason)
        return EventState.FAILED

    async def replay(self, event_id: str) -> EventState:
        """An operator's retry of an ignored or failed event: back to ``received``, then applied now."""
        await self._journal.settle(event_id, EventState.RECEIVED, reset_attempts=True)
        return await self.process(event_id)

    async def drain(self) -> None:
        """Process every queued event (tests and shutdown: no worker is running)."""
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            await self._process_safely(queued)
            self._held.discard(queued.event_id)
            self._queue.task_done()

    async def join(self) -> None:
        """Wait until every queued event has been processed (by the workers or ``drain``)."""
        await self._queue.join()

    async def sweep(self) -> int:
        """Apply every event recorded long enough ago and still unapplied; how many were tried."""
        tried = 0
        async for event_id in self._journal.unapplied(older_than=self._sweep_age):
            if event_id in self._held:
                continue  # queued here: a backlog is not applied twice over
            await self._answers_first()
            try:
                await self._process_safely(Queued(event_id))
            finally:
                self._applied_one()
            tried += 1
        return tried

    async def _process_safely(
        self, queued: Queued, applier: EventApplier | None = None, settles: list[Settle] | None = None
    ) -> None:
        # Late behind a backlog: another process's sweep may take it soon, so it is claimed first,
        # by the ETag its create returned (a read would cost one more request per late event).
        late = self._monotonic() - queued.queued_at > self._sweep_age.total_seconds() / 2
        try:
            await self.process(
                queued.event_id,
                just_recorded=queued.event,
                recorded_etag=queued.etag,
                applier=applier,
                claim=late,
                settles=settles,
            )
        except Exception:
            # The record stays received: the next sweep or Stripe's retry tries again.
            log.exception("webhook event processing failed", event_id=queued.event_id)

    async def serve(self, *, workers: int, sweep_every: float) -> None:
        """Run the queue's workers and the periodic sweep until cancelled: ``workers`` events at once."""
        # Each worker takes a batch, so more events than workers could be under way at once: each
        # would take longer, and one taking longer than half the sweep age may meet another
        # process's sweep (applied twice, seen in a benchmark with 400 at once).
        self._apply_limit = workers
        async with asyncio.TaskGroup() as group:
            for n in range(workers):
                group.create_task(self._work(), name=f"webhooks-apply-{n}")
            group.create_task(self._sweep_forever(sweep_every), name="webhooks-sweep")

    async def _answers_first(self) -> None:
        # Stripe waits for the answer: while deliveries are being recorded, at most
        # ``apply_while_answering`` events are applied at once (0: none), so a burst is answered
        # first and applied beside it as far as that allows, the rest in its gaps or after it. At
        # other times, as many as there are workers.
        while self._applying >= (self._apply_while_answering if self._recording else self._apply_limit):
            self._gate_changed.clear()
            await self._gate_changed.wait()
        self._applying += 1

    def _applied_one(self) -> None:
        self._applying -= 1
        self._gate_changed.set()

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self._process_batch(batch)
            finally:
                for queued in batch:
                    self._held.discard(queued.event_id)
                    self._queue.task_done()

    async def _next_batch(self) -> list[Queued]:
        async with self._gathering:
            batch = [await self._queue.get()]
            if self._batch_size > 1 and self._batch_wait > 0:
                try:
                    await asyncio.sleep(self._batch_wait)  # lets a burst's next events join this batch
                except asyncio.CancelledError:
                    # Stopping: the event goes back to the queue, for ``drain`` to apply at shutdown
                    # (a full queue leaves it, recorded, to the sweep).
                    try:
                        self._queue.put_nowait(batch[0])
                    except asyncio.QueueFull:
                        self._held.discard(batch[0].event_id)
                    self._queue.task_done()
                    raise
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
        return batch

    async def _process_batch(self, batch: list[Queued]) -> None:
        applier = await self._prepared_for([queued.event for queued in batch if queued.event is not None])
        # The batch's records are settled together, one batch of patches per journal bucket instead of
        # a patch per event: those applied so far every ``_settle_every`` seconds, the rest when the
        # batch ends (or is stopped). Not only at the end: a record left unsettled while the rest of a
        # long batch is applied could meet another process's sweep and be applied twice.
        settles: list[Settle] = []
        # A prepared applier holds the messages its applies publish: each round sends those first, in
        # one send, and settles only events whose messages went (the others stay received, for the
        # sweep; an event whose send failed is not settled by a later round either).
        unsent: set[str] = set()
        ended = asyncio.Event()

        async def one(queued: Queued) -> None:
            await self._answers_first()
            try:
                await self._process_safely(queued, applier, settles)
            finally:
                self._applied_one()

        async def settle_applied() -> None:
            taken = settles[:]
            settles.clear()
            if isinstance(applier, HoldsMessages):
                unsent.update(await applier.send_held())
            await self._settle_together([settle for settle in taken if settle.event_id not in unsent])

        async def settle_meanwhile() -> None:
            while not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), self._settle_every)
                await settle_applied()

        settling = asyncio.create_task(settle_meanwhile())
        try:
            await asyncio.gather(*(one(queued) for queued in batch))
        finally:
            ended.set()
            await settling
            await settle_applied()  # those applied while the last round was being settled

    async def _settle_together(self, settles: list[Settle]) -> None:
        if not settles:
            return
        try:
            await self._journal.settle_many(settles)
        except Exception:
            # Those records stay received: the sweep applies them again (idempotent) and settles them.
            log.exception("settling a batch's records failed", events=len(settles))

    async def _prepared_for(self, events: list[StripeEvent]) -> EventApplier:
        if len(events) < 2 or not isinstance(self._applier, PreparesBatches):  # noqa: PLR2004 - a batch
            return self._applier
        await self._answers_first()
        try:
            return await self._applier.prepared_for(events)
        except Exception:
            # Each event then reads what it needs itself, as when it comes alone.
            log.exception("reading a batch's payments failed", events=len(events))
            return self._applier
        finally:
            self._applied_one()

    async def _sweep_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception:
                # Cosmos unreachable: the records wait for the next sweep.
                log.exception("webhook sweep failed")
