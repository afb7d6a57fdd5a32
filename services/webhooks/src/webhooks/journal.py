"""The durable record of every verified event: written before Stripe is answered, settled after."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from otcommon.store import (
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    Patch,
    read_modify_write,
)
from webhooks.models import StripeEvent
from webhooks.states import REASON_FIELD, STATE_FIELD, EventState, check_transition

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from otcommon.store import Document, DocumentContainer, PatchOperation

UNAPPLIED_QUERY = "SELECT c.id FROM c WHERE c.state = @state AND c.receivedAt < @before"
"""Recorded events still waiting, across partitions (one partition per event id)."""

ATTEMPTS_FIELD = "attempts"
CLAIMED_AT_FIELD = "claimedAt"
"""When a process last took the record to apply it, outside the fast path (sweep, redelivery, backlog)."""


class EventJournal:
    """Event records in the ``webhook-events`` container, keyed by Stripe's event id."""

    def __init__(
        self, container: DocumentContainer, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._container = container
        self._clock = clock

    async def record(self, event: StripeEvent) -> str | None:
        """Record a verified event ``received``: the new record's ETag; None when it was recorded before."""
        document = {
            "id": event.id,
            "type": event.type,
            "account": event.account,
            "created": event.created,
            "livemode": event.livemode,
            "payload": event.payload,
            STATE_FIELD: EventState.RECEIVED.value,
            "receivedAt": self._clock().isoformat(),
            ATTEMPTS_FIELD: 0,
        }
        try:
            created = await self._container.create(document)
        except DocumentExistsError:
            return None
        return str(created["_etag"])

    def age_of(self, record: Document) -> timedelta:
        """How long ago the event was first recorded."""
        return self._clock() - datetime.fromisoformat(str(record["receivedAt"]))

    async def read(self, event_id: str) -> Document:
        """The record of one event; DocumentNotFoundError when it was never recorded (or expired)."""
        return await self._container.read(event_id, partition_key=event_id)

    async def state_of(self, event_id: str) -> EventState | None:
        """The state of one event's record; None when there is none."""
        try:
            record = await self.read(event_id)
        except DocumentNotFoundError:
            return None
        return EventState(record[STATE_FIELD])

    async def settle(
        self,
        event_id: str,
        state: EventState,
        *,
        reason: str | None = None,
        reset_attempts: bool = False,
        recorded_etag: str | None = None,
    ) -> Document:
        """Move the record to ``state``; a record already there is left as it is (settled twice).

        ``recorded_etag``: the ETag ``record`` returned; while the record is unchanged since, it is
        still ``received`` and one guarded patch settles it without reading it first (anything else,
        such as an attempt counted or another replica settling, costs the read as usual).
        InvalidTransitionError when the state table forbids the move (replaying an applied event).
        """
        operations: list[PatchOperation] = [
            {"op": "set", "path": f"/{STATE_FIELD}", "value": state.value},
            {"op": "set", "path": f"/{REASON_FIELD}", "value": reason},
            {"op": "set", "path": "/settledAt", "value": self._clock().isoformat()},
            *([{"op": "set", "path": f"/{ATTEMPTS_FIELD}", "value": 0}] if reset_attempts else []),
        ]
        if recorded_etag is not None:
            check_transition(EventState.RECEIVED.value, state)
            try:
                return await self._container.patch(
                    event_id, partition_key=event_id, operations=operations, etag=recorded_etag
                )
            except EtagMismatchError:
                pass  # changed since it was recorded: decide on what is stored

        def move(current: Document) -> Patch | None:
            if current[STATE_FIELD] == state.value:
                return None
            check_transition(current[STATE_FIELD], state)
            return Patch(operations)

        outcome = await read_modify_write(self._container, event_id, partition_key=event_id, mutate=move)
        return outcome.document

    async def claim(self, record: Document, *, hold: timedelta) -> str | None:
        """Mark a record just read as being applied here: the ETag to settle it by; None when it is not ours.

        Not ours: another process claimed it less than ``hold`` ago (its sweep, or its worker late
        behind a backlog, is applying it now), or changed it since it was read. The patch is guarded by
        the ETag of the copy read, so of two processes claiming at once exactly one wins.
        """
        claimed_at = record.get(CLAIMED_AT_FIELD)
        now = self._clock()
        if isinstance(claimed_at, str) and now - datetime.fromisoformat(claimed_at) < hold:
            return None
        operations: list[PatchOperation] = [
            {"op": "set", "path": f"/{CLAIMED_AT_FIELD}", "value": now.isoformat()}
        ]
        try:
            claimed = await self._container.patch(
                str(record["id"]), partition_key=record["id"], operations=operations, etag=record["_etag"]
            )
        except EtagMismatchError:
            return None
        return str(claimed["_etag"])

    async def claim_as_recorded(self, event_id: str, *, recorded_etag: str) -> str | None:
        """Claim a record this process created, by its create's ETag and without reading it.

        The ETag to settle it by; None when the record changed since it was created (another
        process claimed or settled it): it is then left to whoever changed it, or to the sweep.
        """
        return await self.claim({"id": event_id, "_etag": recorded_etag}, hold=timedelta(0))

    async def release(self, record: Document) -> None:
        """Give back a claim whose attempt ended without settling (the event waits): any sweep may retry."""
        if record.get(CLAIMED_AT_FIELD) is None:
            return
        operations: list[PatchOperation] = [{"op": "set", "path": f"/{CLAIMED_AT_FIELD}", "value": None}]
        with contextlib.suppress(EtagMismatchError):  # changed since: whoever changed it decides
            await self._container.patch(
                str(record["id"]), partition_key=record["id"], operations=operations, etag=record["_etag"]
            )

    async def count_attempt(self, event_id: str) -> int:
        """Count one failed attempt at applying the event; the number of attempts so far."""

        def increment(current: Document) -> Patch:
            # The attempt is over: the record is free for the next sweep of any process.
            return Patch(
                [
                    {"op": "set", "path": f"/{ATTEMPTS_FIELD}", "value": _attempts(current) + 1},
                    {"op": "set", "path": f"/{CLAIMED_AT_FIELD}", "value": None},
                ]
            )

        outcome = await read_modify_write(self._container, event_id, partition_key=event_id, mutate=increment)
        return _attempts(outcome.document)

    async def unapplied(self, *, older_than: timedelta) -> AsyncIterator[str]:
        """Ids of events still ``received`` that were recorded at least ``older_than`` ago."""
        before = (self._clock() - older_than).isoformat()
        parameters = {"@state": EventState.RECEIVED.value, "@before": before}
        async for page in self._container.query(UNAPPLIED_QUERY, parameters=parameters):
            for row in page.items:
                yield str(row["id"])


def _attempts(document: Document) -> int:
    value: Any = document.get(ATTEMPTS_FIELD, 0)
    return int(value) if isinstance(value, int) else 0


def event_of(record: Document) -> StripeEvent:
    """The event a record holds (its payload was verified when it was recorded)."""
    payload: dict[str, Any] = record["payload"]
    return StripeEvent(
        id=record["id"],
        type=record["type"],
        created=record["created"],
        livemode=record["livemode"],
        account=record.get("account"),
        payload=payload,
    )
