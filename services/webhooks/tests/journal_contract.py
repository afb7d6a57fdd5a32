"""The event journal's promises, shared by the in-memory fake and Cosmos DB."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from stripe_fixtures import event, fixture

from webhooks.journal import EventJournal, Settle, bucket_of
from webhooks.models import StripeEvent
from webhooks.states import EventState, InvalidTransitionError

if TYPE_CHECKING:
    from otcommon.store import DocumentContainer


def fresh_event() -> StripeEvent:
    envelope = event("refund.created", fixture("refund"))
    envelope["id"] = f"evt_{uuid.uuid4().hex}"
    return StripeEvent.parse(json.dumps(envelope))


def events_in_one_bucket(count: int) -> list[StripeEvent]:
    """Fresh events whose records share a bucket (a partition), so that they can be written together."""
    found: list[StripeEvent] = []
    while len(found) < count:
        candidate = fresh_event()
        if bucket_of(candidate.id) == "0":
            found.append(candidate)
    return found


class CountingReads:
    """The events container, counting point reads (which steps read the record back) and all requests."""

    def __init__(self, inner: DocumentContainer) -> None:
        self._inner = inner
        self.reads = 0
        self.requests = 0
        self.batches = 0

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
        self.requests += 1
        return await self._inner.read(document_id, partition_key=partition_key)

    async def create(self, document: Any) -> dict[str, Any]:
        self.requests += 1
        return await self._inner.create(document)

    async def patch(self, document_id: str, **options: Any) -> dict[str, Any]:
        self.requests += 1
        return await self._inner.patch(document_id, **options)

    async def write_batch(
        self, writes: Any, *, partition_key: Any, return_documents: bool = True
    ) -> list[dict[str, Any]]:
        self.requests += 1
        self.batches += 1
        return await self._inner.write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )


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

    async def test_records_asked_for_at_once_are_created_together_each_with_its_own_etag(
        self, journal: EventJournal, counting: CountingReads
    ):
        stripe_events = events_in_one_bucket(10)
        etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
        assert counting.requests < len(stripe_events)
        assert all(etag is not None for etag in etags)
        for each, etag in zip(stripe_events, etags, strict=True):
            stored = await journal.read(each.id)
            assert (stored["state"], stored["_etag"], stored["payload"]) == ("received", etag, each.payload)

    async def test_records_of_every_bucket_asked_for_at_once_are_all_created(self, journal: EventJournal):
        stripe_events = [fresh_event() for _ in range(40)]
        etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
        assert all(etag is not None for etag in etags)
        assert [(await journal.read(each.id))["state"] for each in stripe_events] == ["received"] * 40

    async def test_a_redelivery_among_records_created_together_is_a_duplicate_and_the_others_are_recorded(
        self, journal: EventJournal, counting: CountingReads
    ):
        seen, *others = events_in_one_bucket(4)
        assert await journal.record(seen) is not None
        counting.requests = 0
        etags = await asyncio.gather(*(journal.record(each) for each in (others[0], seen, *others[1:])))
        assert etags[1] is None
        assert all(etag is not None for etag in (etags[0], *etags[2:]))
        assert counting.requests < len(etags)
        assert [(await journal.read(each.id))["state"] for each in others] == ["received"] * 3

    async def test_two_deliveries_of_one_event_at_once_record_it_once(self, journal: EventJournal):
        stripe_event, other = events_in_one_bucket(2)
        etags = await asyncio.gather(
            journal.record(stripe_event), journal.record(stripe_event), journal.record(other)
        )
        assert sorted(etag is None for etag in etags[:2]) == [False, True]
        assert etags[2] is not None

    async def test_each_record_created_together_is_settled_by_its_own_etag_without_reading_it(
        self, journal: EventJournal, counting: CountingReads
    ):
        stripe_events = events_in_one_bucket(5)
        etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
        for each, etag in zip(stripe_events, etags, strict=True):
            stored = await journal.settle(each.id, EventState.APPLIED, recorded_etag=etag)
            assert stored["state"] == "applied"
        assert counting.reads == 0

    async def test_records_settled_together_take_one_request_per_bucket(
        self, journal: EventJournal, counting: CountingReads
    ):
        stripe_events = events_in_one_bucket(6)
        etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
        counting.requests = 0
        await journal.settle_many(
            [
                Settle(each.id, EventState.APPLIED, None, str(etag))
                for each, etag in zip(stripe_events, etags, strict=True)
            ]
        )
        assert (counting.requests, counting.reads) == (1, 0)
        assert [(await journal.read(each.id))["state"] for each in stripe_events] == ["applied"] * 6

    async def test_records_settled_together_with_one_stale_etag_settle_the_others_and_decide_it_by_reading(
        self, journal: EventJournal, counting: CountingReads
    ):
        stripe_events = events_in_one_bucket(4)
        etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
        await journal.count_attempt(stripe_events[2].id)  # its ETag is stale now; it is still received
        counting.reads = 0
        await journal.settle_many(
            [
                Settle(each.id, EventState.IGNORED, "unknown-event-type", str(etag))
                for each, etag in zip(stripe_events, etags, strict=True)
            ]
        )
        stored = [await journal.read(each.id) for each in stripe_events]
        assert [each["state"] for each in stored] == ["ignored"] * 4
        assert [each["reason"] for each in stored] == ["unknown-event-type"] * 4
        assert stored[2]["attempts"] == 1
        assert counting.reads == 1 + 4  # the stale one's, then this test's

    async def test_a_record_settled_elsewhere_is_left_as_it_is_while_the_batch_settles_the_others(
        self, journal: EventJournal
    ):
        stripe_events = events_in_one_bucket(3)
        etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
        await journal.settle(stripe_events[0].id, EventState.FAILED, reason="gave-up-after-retries: X")
        settles = [
            Settle(each.id, EventState.APPLIED, None, str(etag))
            for each, etag in zip(stripe_events, etags, strict=True)
        ]
        with pytest.raises(InvalidTransitionError):
            await journal.settle_many(settles)
        stored = [await journal.read(each.id) for each in stripe_events]
        assert [each["state"] for each in stored] == ["failed", "applied", "applied"]
        assert stored[0]["reason"] == "gave-up-after-retries: X"
