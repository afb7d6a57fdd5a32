"""Incremental sync from the OpenTickets API: pages in, transactions stored, payments queued.

The checkpoint (the newest ``updatedAt`` fully handled) advances only after a page's rows are
stored and their messages published. Each run starts ``overlap`` before the checkpoint because
``updatedAt`` stamps can arrive late or tie; re-read rows are unchanged and cost no write. A stop
request ends the run at the next page boundary, with a consistent checkpoint: the pages in hand
are stored and queued, no further page is waited for (a fetch that is retrying is cancelled), and
the catalog refresh is left to the next run (its backlog keeps the events).

Pages are fetched ahead while the previous ones are written. The pages that arrived meanwhile (up
to ``MAX_PAGES_PER_WRITE``) are stored together: a page holds only a few rows of each event, and
writing several pages at once fills each partition's batch, which divides the number of Cosmos DB
requests. The checkpoint then moves once for those pages, still only after all of them are stored
and queued.

Storing and queueing overlap: while one group's payments are published, marked queued and
checkpointed (in a background task), the next group is mapped and stored. Queueing runs one group
at a time and in order, so the checkpoint still only moves past rows that are stored and queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import structlog

from ingest.checkpoint import SyncCheckpoint
from ingest.mapping import Rejected, map_api_row, quarantine_record
from otcommon.schemas import RowValidationError, format_timestamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

    from ingest.catalog import EventCatalog
    from ingest.checkpoint import CheckpointStore
    from ingest.queueing import EnrichmentQueue
    from ingest.source import TransactionPage, TransactionSource
    from ingest.storage import StoredChanges, TransactionWriter
    from otcommon.schemas import TicketTransaction
    from otcommon.store import DocumentContainer

log = structlog.get_logger("ingest.sync")

FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of this machine's clock a source stamp may be before it is refused."""

MAX_PAGES_PER_WRITE = 10
"""At most this many fetched pages are stored together (5,000 rows at the default page size)."""

RunState = Literal["idle", "running", "completed", "stopped", "failed"]


@dataclass
class SyncProgress:
    """A run's progress, as the status endpoint and the CLI report it."""

    state: RunState = "idle"
    started_at: str | None = None
    finished_at: str | None = None
    updated_since: str | None = None
    pages: int = 0
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    queued: int = 0
    repaired: int = 0
    checkpoint: str | None = None
    error: str | None = None
    rejected_reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The progress as JSON."""
        return asdict(self)


@dataclass
class SyncRunner:
    """Everything one sync needs, passed in explicitly."""

    source: TransactionSource
    writer: TransactionWriter
    queue: EnrichmentQueue
    checkpoints: CheckpointStore
    quarantine: DocumentContainer
    catalog: EventCatalog
    source_name: str
    overlap: timedelta = timedelta(minutes=5)

    async def run(
        self,
        *,
        progress: SyncProgress | None = None,
        since: datetime | None = None,
        stop: asyncio.Event | None = None,
    ) -> SyncProgress:
        """One sync from the checkpoint (or from ``since``, a backfill) to the newest change."""
        progress = progress or SyncProgress()
        stop = stop or asyncio.Event()
        progress.state = "running"
        progress.started_at = format_timestamp(datetime.now(tz=UTC))
        started = time.perf_counter()
        try:
            progress.repaired = await self.queue.repair()
            checkpoint = await self.checkpoints.load(self.source_name)
            updated_since = since if since is not None else _start_from(checkpoint, self.overlap)
            progress.updated_since = format_timestamp(updated_since) if updated_since else None
            # Stamps beyond the run's start (plus clock skew) are not trusted to move the checkpoint.
            horizon = datetime.now(tz=UTC) + FUTURE_SKEW
            stopped = await self._sync_pages(updated_since, checkpoint, progress, horizon, stop)
            # After a stop nothing new starts: the catalog backlog keeps the events for the next run.
            if not stopped:
                stopped = isinstance(await _unless_stopped(self._refresh_catalog(), stop), _Stopped)
            progress.state = "stopped" if stopped else "completed"
        except asyncio.CancelledError:
            # Cancelled past the shutdown grace: the checkpoint still only covers stored, queued rows.
            progress.state = "stopped"
            raise
        except Exception as exc:
            progress.state = "failed"
            progress.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            progress.finished_at = format_timestamp(datetime.now(tz=UTC))
            log.info(
                "sync finished",
                state=progress.state,
                pages=progress.pages,
                rows=progress.rows_read,
                created=progress.created,
                updated=progress.updated,
                unchanged=progress.unchanged,
                rejected=progress.rejected,
                queued=progress.queued,
                duration_s=round(time.perf_counter() - started, 3),
            )
        return progress

    async def _sync_pages(
        self,
        updated_since: datetime | None,
        checkpoint: SyncCheckpoint,
        progress: SyncProgress,
        horizon: datetime,
        stop: asyncio.Event,
    ) -> bool:
        """Store and queue every page from ``updated_since``; True when a stop ended it early."""
        async with (
            _PagesAhead(self.source.pages(updated_since=updated_since)) as ahead,
            _InOrder() as queueing,
        ):
            while True:
                # Once a stop is requested, only a page already fetched is taken: no new wait.
                pages = await _unless_stopped(ahead.take(1 if stop.is_set() else MAX_PAGES_PER_WRITE), stop)
                if isinstance(pages, _Stopped):
                    return True
                if not pages:
                    return False
                stored = await self._store_pages(pages, checkpoint, progress, horizon)
                checkpoint = stored.checkpoint or checkpoint
                await queueing.then(self._queue_and_checkpoint(stored, progress))
                if stop.is_set():
                    return True

    async def _store_pages(
        self,
        pages: list[TransactionPage],
        checkpoint: SyncCheckpoint,
        progress: SyncProgress,
        horizon: datetime,
    ) -> _StoredPages:
        transactions: list[TicketTransaction] = []
        newest = checkpoint.updated_until
        for number, page in enumerate(pages, start=progress.pages + 1):
            for position, raw in enumerate(page.rows):
                location = f"page {number} row {position + 1}"
                try:
                    transaction = map_api_row(raw, horizon=horizon)
                except RowValidationError as exc:
                    await self._reject(raw, exc, location, progress)
                    continue
                transactions.append(transaction)
                stamp = transaction.source_updated_at
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
        # Rows in page order: an order repeated on a later page is the newer copy, and the writer keeps
        # the last copy of each id.
        await self.catalog.mark({transaction.event_id for transaction in transactions})
        changes = await self.writer.write(transactions)
        progress.pages += len(pages)
        progress.rows_read += sum(len(page.rows) for page in pages)
        progress.created += changes.created
        progress.updated += changes.updated
        progress.unchanged += changes.unchanged
        moved = newest is not None and newest != checkpoint.updated_until
        return _StoredPages(
            changes=changes,
            checkpoint=SyncCheckpoint(source=self.source_name, updated_until=newest) if moved else None,
        )

    async def _queue_and_checkpoint(self, stored: _StoredPages, progress: SyncProgress) -> None:
        progress.queued += await self.queue.enqueue(stored.changes.pending)
        if stored.checkpoint is not None and stored.checkpoint.updated_until is not None:
            await self.checkpoints.save(stored.checkpoint)
            progress.checkpoint = format_timestamp(stored.checkpoint.updated_until)

    async def _reject(
        self, raw: Any, error: RowValidationError, location: str, progress: SyncProgress
    ) -> None:
        row = raw if isinstance(raw, dict) else {"row": raw}
        rejected = Rejected(raw=row, problems=error.problems, location=location)
        await self.quarantine.upsert(quarantine_record(source=self.source_name, rejected=rejected))
        progress.rejected += 1
        for reason in rejected.reasons:
            progress.rejected_reasons[reason] = progress.rejected_reasons.get(reason, 0) + 1

    async def _refresh_catalog(self) -> None:
        await self.catalog.refresh_pending(details=await self._event_details())

    async def _event_details(self) -> dict[str, dict[str, Any]]:
        try:
            events = await self.source.events()
        except Exception:  # noqa: BLE001 - names and cities are a nicety; counts are what matter
            log.warning("event details unavailable; catalog keeps names from transactions")
            return {}
        return {str(event["id"]): event for event in events if isinstance(event, dict) and "id" in event}


@dataclass
class _StoredPages:
    """A group of pages whose rows are stored: what is left to queue, and the checkpoint after it."""

    changes: StoredChanges
    checkpoint: SyncCheckpoint | None
    """Where the checkpoint moves once these rows are queued; None when it stays."""


class _InOrder:
    """Runs steps in the background one at a time, in the order given.

    ``then`` waits for the previous step (raising its error) before starting the next, so at most
    one runs beside the caller. Leaving the block waits for the last step: a run never returns, or
    stops, with a step still in flight.
    """

    def __init__(self) -> None:
        self._running: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            await self._wait()
            return
        running, self._running = self._running, None
        if running is None:
            return
        if issubclass(exc_type, asyncio.CancelledError):
            running.cancel()  # what it had not marked stays pending; the next run's repair publishes it
        try:
            await running
        except asyncio.CancelledError:
            pass
        except Exception:  # the block's own error is the one raised; this one is logged
            log.exception("queueing of the last stored pages failed too")

    async def then(self, step: Coroutine[Any, Any, None]) -> None:
        """Wait for the previous step, then start ``step``."""
        try:
            await self._wait()
        except BaseException:
            step.close()
            raise
        self._running = asyncio.create_task(step)

    async def _wait(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running


class _PagesAhead:
    """Fetches pages in a background task, at most ``MAX_PAGES_PER_WRITE`` ahead of the writer."""

    def __init__(self, pages: AsyncIterator[TransactionPage]) -> None:
        self._pages = pages
        self._queue: asyncio.Queue[TransactionPage | BaseException | None] = asyncio.Queue(
            maxsize=MAX_PAGES_PER_WRITE
        )
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.exhausted = False

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._fetch(), name="ingest-fetch-pages")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        aclose = getattr(self._pages, "aclose", None)
        if aclose is not None:
            await aclose()

    async def take(self, limit: int) -> list[TransactionPage]:
        """The next page (waiting for it) and those fetched after it, up to ``limit``; [] at the end.

        A fetch error is raised after the pages that arrived before it have been handed out, so
        they are stored and checkpointed first.
        """
        pages: list[TransactionPage] = []
        while len(pages) < limit and not self.exhausted:
            if pages and self._queue.empty():
                break
            if self._error is not None and not pages:
                error, self._error = self._error, None
                self.exhausted = True
                raise error
            if self._error is not None:
                break
            item = await self._queue.get()
            if item is None:
                self.exhausted = True
            elif isinstance(item, BaseException):
                if not pages:
                    self.exhausted = True
                    raise item
                self._error = item
            else:
                pages.append(item)
        return pages

    async def _fetch(self) -> None:
        try:
            async for page in self._pages:
                await self._queue.put(page)
        except Exception as exc:  # noqa: BLE001 - handed to the writer, which raises it in its own task
            await self._queue.put(exc)
            return
        await self._queue.put(None)


class _Stopped:
    """What a step abandoned because a stop was requested returns."""


_T = TypeVar("_T")


async def _unless_stopped(step: Coroutine[Any, Any, _T], stop: asyncio.Event) -> _T | _Stopped:
    """``step``'s result, or ``_Stopped`` (with ``step`` cancelled) once a stop is requested.

    A step that finished by the time the stop is seen keeps its result, so pages already taken are
    stored. Cancelling ends the step's retries, which could otherwise outlast the shutdown grace.
    """
    task = asyncio.create_task(step)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            # wait(), unlike awaiting the task, raises only if this task itself is cancelled.
            await asyncio.wait((task,))
    if task.cancelled():
        return _Stopped()
    return task.result()


def _start_from(checkpoint: SyncCheckpoint, overlap: timedelta) -> datetime | None:
    if checkpoint.updated_until is None:
        return None
    return checkpoint.updated_until - overlap
