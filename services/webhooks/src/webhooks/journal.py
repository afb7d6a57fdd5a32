"""The durable record of every verified event: written before Stripe is answered, settled after.

Records live in a fixed number of buckets (the container's partitions), so that the records asked
for at the same moment can be written together: a create asked while a create round of its bucket
is in flight goes in that bucket's next round, one transactional batch (group commit), and the
settles of a worker's batch go as one batch of ETag-guarded patches per bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from otcommon.store import (
    MAX_BATCH_OPERATIONS,
    BatchWrite,
    BatchWriteError,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    Patch,
    StoreError,
    read_modify_write,
)
from webhooks.models import StripeEvent
from webhooks.states import REASON_FIELD, STATE_FIELD, EventState, check_transition

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from otcommon.store import Document, DocumentContainer, PatchOperation

UNAPPLIED_QUERY = "SELECT c.id FROM c WHERE c.state = @state AND c.receivedAt < @before"
"""Recorded events still waiting, across the buckets."""

JOURNAL_BUCKETS = 8
"""Partitions of the ``webhook-journal`` container, each event id in one of them (``bucket_of``).

Fixed for the container's life: with another number a redelivery could be looked for in another
bucket than its record's, and its create would no longer be the idempotency key (Cosmos DB ids are
unique per partition only). More buckets need a new container (see the design note's sizing).
"""

BUCKET_FIELD = "bucket"

HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409
HTTP_PRECONDITION_FAILED = 412

ATTEMPTS_FIELD = "attempts"
CLAIMED_AT_FIELD = "claimedAt"
"""When a process last took the record to apply it, outside the fast path (sweep, redelivery, backlog)."""


def bucket_of(event_id: str) -> str:
    """The bucket (partition key) of an event's record: the same for every delivery of the event."""
    return str(zlib.crc32(event_id.encode()) % JOURNAL_BUCKETS)


@dataclass(frozen=True, slots=True)
class Settle:
    """One record to settle in a batch, under the ETag its create (or claim) returned."""

    event_id: str
    state: EventState
    reason: str | None
    recorded_etag: str


@dataclass(frozen=True, slots=True)
class _Create:
    document: Document
    answer: asyncio.Future[str | None]


class EventJournal:
    """Event records in the ``webhook-journal`` container, keyed by Stripe's event id, in buckets."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_batch: int = MAX_BATCH_OPERATIONS,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_OPERATIONS:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH_OPERATIONS}")
        self._container = container
        self._clock = clock
        self._max_batch = max_batch
        self._creates_waiting: dict[str, list[_Create]] = {}
        self._creating: dict[str, asyncio.Task[None]] = {}

    async def record(self, event: StripeEvent) -> str | None:
        """Record a verified event ``received``: the new record's ETag; None when it was recorded before.

        Creates asked while a create round of the same bucket is in flight go together in its next
        round, one transactional batch (a lone create goes out at once, as a plain create).
        """
        bucket = bucket_of(event.id)
        document: Document = {
            "id": event.id,
            BUCKET_FIELD: bucket,
            "type": event.type,
            "account": event.account,
            "created": event.created,
            "livemode": event.livemode,
            "payload": event.payload,
            STATE_FIELD: EventState.RECEIVED.value,
            "receivedAt": self._clock().isoformat(),
            ATTEMPTS_FIELD: 0,
        }
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._creates_waiting.setdefault(bucket, []).append(_Create(document, answer))
        if bucket not in self._creating:
            # A task, so that the creates of the deliveries woken together with this one join it.
            self._creating[bucket] = asyncio.ensure_future(self._create_rounds(bucket))
        return await answer

    async def _create_rounds(self, bucket: str) -> None:
        try:
            while waiting := self._creates_waiting.pop(bucket, None):
                # Two deliveries of one event in a round: the later waits for the next round, where it
                # meets the first's record (or creates it, if the first failed), never its rollback.
                round_: list[_Create] = []
                later: list[_Create] = []
                ids: set[str] = set()
                for each in waiting:
                    (later if each.document["id"] in ids else round_).append(each)
                    ids.add(each.document["id"])
                if later:
                    self._creates_waiting[bucket] = later
                await asyncio.gather(
                    *(
                        self._create_together(round_[start : start + self._max_batch], bucket)
                        for start in range(0, len(round_), self._max_batch)
                    )
                )
        finally:
            del self._creating[bucket]

    async def _create_together(self, creates: list[_Create], bucket: str) -> None:
        # Whatever ends the round (a fault here, the loop stopping), no caller is left waiting.
        try:
            await self._send_creates(creates, bucket)
        except Exception as error:  # noqa: BLE001 - handed to every caller still waiting, who raises it
            for each in creates:
                _answer(each, error=error)
        except BaseException:
            for each in creates:
                each.answer.cancel()
            raise

    async def _send_creates(self, creates: list[_Create], bucket: str) -> None:
        while len(creates) > 1:
            writes = [BatchWrite("create", each.document) for each in creates]
            try:
                written = await self._container.write_batch(writes, partition_key=bucket)
            except BatchWriteError as error:
                if error.status == HTTP_CONFLICT and 0 <= error.index < len(creates):
                    # Recorded before (a redelivery): nothing of the batch was applied; the others go again.
                    _answer(creates.pop(error.index), None)
                    continue
                break  # each on its own, below, with its own outcome
            except StoreError:
                break  # e.g. a batch over the request size limit: each on its own
            except Exception as error:  # noqa: BLE001 - handed to every caller, who raises it
                for each in creates:
                    _answer(each, error=error)
                return
            for each, document in zip(creates, written, strict=True):
                _answer(each, str(document["_etag"]))
            return
        await asyncio.gather(*(self._create_alone(each) for each in creates))

    async def _create_alone(self, create: _Create) -> None:
        try:
            created = await self._container.create(create.document)
        except DocumentExistsError:
            _answer(create, None)
        except Exception as error:  # noqa: BLE001 - handed to the caller, who raises it
            _answer(create, error=error)
        else:
            _answer(create, str(created["_etag"]))

    def age_of(self, record: Document) -> timedelta:
        """How long ago the event was first recorded."""
        return self._clock() - datetime.fromisoformat(str(record["receivedAt"]))

    async def read(self, event_id: str) -> Document:
        """The record of one event; DocumentNotFoundError when it was never recorded (or expired)."""
        return await self._container.read(event_id, partition_key=bucket_of(event_id))

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
        operations = self._settle_operations(state, reason, reset_attempts=reset_attempts)
        bucket = bucket_of(event_id)
        if recorded_etag is not None:
            check_transition(EventState.RECEIVED.value, state)
            try:
                return await self._container.patch(
                    event_id, partition_key=bucket, operations=operations, etag=recorded_etag
                )
            except EtagMismatchError:
                pass  # changed since it was recorded: decide on what is stored

        def move(current: Document) -> Patch | None:
            if current[STATE_FIELD] == state.value:
                return None
            check_transition(current[STATE_FIELD], state)
            return Patch(operations)

        outcome = await read_modify_write(self._container, event_id, partition_key=bucket, mutate=move)
        return outcome.document

    async def settle_many(self, settles: Sequence[Settle]) -> None:
        """Settle records by the ETags their creates (or claims) returned, one batch of patches per bucket.

        A batch is atomic: when one record changed since its ETag (claimed or settled elsewhere),
        nothing of it is applied, that record is settled alone on what is stored (read and
        decided, as ``settle`` does) and the others go again together. Every record is tried; the
        first error, if any, is raised after (those records stay ``received`` for the sweep).
        """
        for each in settles:
            check_transition(EventState.RECEIVED.value, each.state)
        by_bucket: dict[str, list[Settle]] = {}
        for each in settles:
            by_bucket.setdefault(bucket_of(each.event_id), []).append(each)
        outcomes = await asyncio.gather(
            *(
                self._settle_together(chunk[start : start + self._max_batch], bucket)
                for bucket, chunk in by_bucket.items()
                for start in range(0, len(chunk), self._max_batch)
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _settle_together(self, settles: list[Settle], bucket: str) -> None:
        stale: list[Settle] = []
        while len(settles) > 1:
            writes = [
                BatchWrite.patch(
                    each.event_id, self._settle_operations(each.state, each.reason), etag=each.recorded_etag
                )
                for each in settles
            ]
            try:
                # Nothing reads the settled records back: they are not sent back either.
                await self._container.write_batch(writes, partition_key=bucket, return_documents=False)
            except BatchWriteError as error:
                changed = error.status in {HTTP_PRECONDITION_FAILED, HTTP_NOT_FOUND}
                if changed and 0 <= error.index < len(settles):
                    stale.append(settles.pop(error.index))
                    continue
                break  # each on its own, below
            except StoreError:
                break
            settles = []
        outcomes = await asyncio.gather(
            *(
                self.settle(each.event_id, each.state, reason=each.reason, recorded_etag=each.recorded_etag)
                for each in settles
            ),
            *(self.settle(each.event_id, each.state, reason=each.reason) for each in stale),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _settle_operations(
        self, state: EventState, reason: str | None, *, reset_attempts: bool = False
    ) -> list[PatchOperation]:
        return [
            {"op": "set", "path": f"/{STATE_FIELD}", "value": state.value},
            {"op": "set", "path": f"/{REASON_FIELD}", "value": reason},
            {"op": "set", "path": "/settledAt", "value": self._clock().isoformat()},
            *([{"op": "set", "path": f"/{ATTEMPTS_FIELD}", "value": 0}] if reset_attempts else []),
        ]

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
                str(record["id"]),
                partition_key=bucket_of(str(record["id"])),
                operations=operations,
                etag=record["_etag"],
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
                str(record["id"]),
                partition_key=bucket_of(str(record["id"])),
                operations=operations,
                etag=record["_etag"],
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

        outcome = await read_modify_write(
            self._container, event_id, partition_key=bucket_of(event_id), mutate=increment
        )
        return _attempts(outcome.document)

    async def unapplied(self, *, older_than: timedelta) -> AsyncIterator[str]:
        """Ids of events still ``received`` that were recorded at least ``older_than`` ago."""
        before = (self._clock() - older_than).isoformat()
        parameters = {"@state": EventState.RECEIVED.value, "@before": before}
        async for page in self._container.query(UNAPPLIED_QUERY, parameters=parameters):
            for row in page.items:
                yield str(row["id"])


def _answer(create: _Create, etag: str | None = None, *, error: Exception | None = None) -> None:
    if create.answer.done():
        return  # its caller was cancelled
    if error is not None:
        create.answer.set_exception(error)
    else:
        create.answer.set_result(etag)


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
