"""The event journal's promises, shared by the in-memory fake and Cosmos DB."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from stripe_fixtures import event, fixture

from webhooks.models import StripeEvent
from webhooks.states import EventState, InvalidTransitionError

if TYPE_CHECKING:
    from webhooks.journal import EventJournal


def fresh_event() -> StripeEvent:
    envelope = event("refund.created", fixture("refund"))
    envelope["id"] = f"evt_{uuid.uuid4().hex}"
    return StripeEvent.parse(json.dumps(envelope))


class JournalContract:
    """Needs fixtures ``journal`` (an EventJournal) and ``clock`` (the journal's settable clock)."""

    async def test_an_event_is_recorded_once(self, journal: EventJournal):
        stripe_event = fresh_event()
        assert await journal.record(stripe_event) is True
        assert await journal.record(stripe_event) is False
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
