"""The event journal's promises, shared by the in-memory fake and Cosmos DB."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from stripe_fixtures import event, fixture

from webhooks.journal import EventJournal
from webhooks.models import StripeEvent
from webhooks.states import EventState, InvalidTransitionError

if TYPE_CHECKING:
    from otcommon.store import DocumentContainer


def fresh_event() -> StripeEvent:
    envelope = event("refund.created", fixture("refund"))
    envelope["id"] = f"evt_{uuid.uuid4().hex}"
    return StripeEvent.parse(json.dumps(envelope))


class CountingReads:
    """The events container, counting point reads (to see which steps read the record back)."""

    def __init__(self, inner: DocumentContainer) -> None:
        self._inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def partition_key_path(self) -> str:
        return self._inner.partition_key_path

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        self.reads += 1
        return await self._inner.read(document_id, partition_key=partition_key)


class JournalContract:
    """Needs fixtures ``events`` (the ``webhook-journal`` container) and ``clock`` (a settable clock)."""

    @pytest.fixture
    def counting(self, events: DocumentContainer) -> CountingReads:
        return CountingReads(events)

    @pytest.fixture
    def journal(self, counting: CountingReads, clock) -> EventJournal:
        return EventJournal(counting, clock=clock)  # type: ignore[arg-type]

    async def test_an_event_is_recorded_once(self, journal: EventJournal):
        stripe_event = fresh_event()
        assert await journal.record(stripe_event) is not None
        assert await journal.record(stripe_event) is None
        stored = await journal.read(stripe_event.id)
        assert (stored["state"], stored["type"], stored["payload"]) == (
            "received",
            "refund.created",
            stripe_event.payload,
        )

    async def test_the_sweep_finds_old_unapplied_events_only(self, journal: EventJournal, clock):
        waiting, settled, recent = fresh_event(), fresh_event(), fresh_event()
        await journal.record(waiting)
        await journal.record(settled)
        await journal.settle(settled.id, EventState.APPLIED)
        clock.advance(60)
        await journal.record(recent)
        found = [event_id async for event_id in journal.unapplied(older_than=timedelta(seconds=30))]
        assert waiting.id in found
        assert settled.id not in found
        assert recent.id not in found

    async def test_settling_follows_the_state_table(self, journal: EventJournal):
        stripe_event = fresh_event()
        await journal.record(stripe_event)
        await journal.settle(stripe_event.id, EventState.FAILED, reason="gave-up-after-retries: X")
        stored = await journal.settle(stripe_event.id, EventState.FAILED, reason="again")
        assert stored["reason"] == "gave-up-after-retries: X"  # settled twice: the first stands
        await journal.settle(stripe_event.id, EventState.RECEIVED)
        await journal.settle(stripe_event.id, EventState.APPLIED)
        with pytest.raises(InvalidTransitionError):
            await journal.settle(stripe_event.id, EventState.RECEIVED)

    async def test_attempts_are_counted(self, journal: EventJournal):
        stripe_event = fresh_event()
        await journal.record(stripe_event)
        assert await journal.count_attempt(stripe_event.id) == 1
        assert await journal.count_attempt(stripe_event.id) == 2

    async def test_a_fresh_record_is_settled_by_its_etag_without_reading_it(
        self, journal: EventJournal, counting: CountingReads
    ):
        stripe_event = fresh_event()
        etag = await journal.record(stripe_event)
        stored = await journal.settle(stripe_event.id, EventState.APPLIED, recorded_etag=etag)
        assert (stored["state"], counting.reads) == ("applied", 0)
        assert (await journal.read(stripe_event.id))["state"] == "applied"

    async def test_a_record_changed_since_its_etag_is_settled_on_what_is_stored(self, journal: EventJournal):
        stripe_event = fresh_event()
        etag = await journal.record(stripe_event)
        await journal.count_attempt(stripe_event.id)  # the ETag is stale now
        stored = await journal.settle(stripe_event.id, EventState.APPLIED, recorded_etag=etag)
        assert (stored["state"], stored["attempts"]) == ("applied", 1)

    async def test_a_record_settled_elsewhere_is_not_settled_again_by_a_stale_etag(
        self, journal: EventJournal
    ):
        stripe_event = fresh_event()
        etag = await journal.record(stripe_event)
        await journal.settle(stripe_event.id, EventState.FAILED, reason="gave-up-after-retries: X")
        with pytest.raises(InvalidTransitionError):
            await journal.settle(stripe_event.id, EventState.APPLIED, recorded_etag=etag)
        assert (await journal.read(stripe_event.id))["reason"] == "gave-up-after-retries: X"

    async def test_of_two_processes_claiming_one_record_one_wins_until_the_hold_ends(
        self, journal: EventJournal, clock
    ):
        stripe_event = fresh_event()
        await journal.record(stripe_event)
        read_here, read_there = await journal.read(stripe_event.id), await journal.read(stripe_event.id)
        hold = timedelta(seconds=10)
        assert await journal.claim(read_here, hold=hold) is not None
        assert await journal.claim(read_there, hold=hold) is None  # same copy read: the ETag moved on
        assert await journal.claim(await journal.read(stripe_event.id), hold=hold) is None  # held
        clock.advance(11)
        etag = await journal.claim(await journal.read(stripe_event.id), hold=hold)
        stored = await journal.settle(stripe_event.id, EventState.APPLIED, recorded_etag=etag)
        assert stored["state"] == "applied"

    async def test_a_record_unchanged_since_its_create_is_claimed_by_that_etag_without_reading_it(
        self, journal: EventJournal, counting: CountingReads
    ):
        stripe_event = fresh_event()
        etag = await journal.record(stripe_event)
        assert etag is not None
        claimed = await journal.claim_as_recorded(stripe_event.id, recorded_etag=etag)
        assert claimed is not None
        assert counting.reads == 0
        stored = await journal.settle(stripe_event.id, EventState.APPLIED, recorded_etag=claimed)
        assert (stored["state"], stored["claimedAt"] is not None) == ("applied", True)

    async def test_a_record_another_process_claimed_is_not_claimed_by_its_creates_etag(
        self, journal: EventJournal
    ):
        stripe_event = fresh_event()
        etag = await journal.record(stripe_event)
        assert etag is not None
        assert await journal.claim(await journal.read(stripe_event.id), hold=timedelta(seconds=10))
        assert await journal.claim_as_recorded(stripe_event.id, recorded_etag=etag) is None
