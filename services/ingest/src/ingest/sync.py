"""Incremental sync from the OpenTickets API: pages in, transactions stored, payments queued.

The checkpoint (the newest ``updatedAt`` fully handled) advances only after a page's rows are
stored and their messages published. Each run starts ``overlap`` before the checkpoint because
``updatedAt`` stamps can arrive late or tie; re-read rows are unchanged and cost no write. A stop
request ends the run at the next page boundary, with a consistent checkpoint.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import structlog

from ingest.checkpoint import SyncCheckpoint
from ingest.mapping import Rejected, map_api_row, quarantine_record
from otcommon.schemas import RowValidationError, format_timestamp

if TYPE_CHECKING:
    from ingest.catalog import EventCatalog
    from ingest.checkpoint import CheckpointStore
    from ingest.queueing import EnrichmentQueue
    from ingest.source import TransactionPage, TransactionSource
    from ingest.storage import TransactionWriter
    from otcommon.schemas import TicketTransaction
    from otcommon.store import DocumentContainer

log = structlog.get_logger("ingest.sync")

FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of this machine's clock a source stamp may be before it is refused."""

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
            async for page in self.source.pages(updated_since=updated_since):
                checkpoint = await self._handle_page(page, checkpoint, progress, horizon)
                if stop.is_set():
                    progress.state = "stopped"
                    break
            else:
                progress.state = "completed"
            await self.catalog.refresh_pending(details=await self._event_details())
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

    async def _handle_page(
        self, page: TransactionPage, checkpoint: SyncCheckpoint, progress: SyncProgress, horizon: datetime
    ) -> SyncCheckpoint:
        transactions: list[TicketTransaction] = []
        newest = checkpoint.updated_until
        for position, raw in enumerate(page.rows):
            location = f"page {progress.pages + 1} row {position + 1}"
            try:
                transaction = map_api_row(raw, horizon=horizon)
            except RowValidationError as exc:
                await self._reject(raw, exc, location, progress)
                continue
            transactions.append(transaction)
            stamp = transaction.source_updated_at
            if stamp is not None and (newest is None or stamp > newest):
                newest = stamp
        await self.catalog.mark({transaction.event_id for transaction in transactions})
        changes = await self.writer.write(transactions)
        progress.queued += await self.queue.enqueue(changes.pending)
        if newest is not None and newest != checkpoint.updated_until:
            checkpoint = SyncCheckpoint(source=self.source_name, updated_until=newest)
            await self.checkpoints.save(checkpoint)
            progress.checkpoint = format_timestamp(newest)
        progress.pages += 1
        progress.rows_read += len(page.rows)
        progress.created += changes.created
        progress.updated += changes.updated
        progress.unchanged += changes.unchanged
        return checkpoint

    async def _reject(
        self, raw: Any, error: RowValidationError, location: str, progress: SyncProgress
    ) -> None:
        row = raw if isinstance(raw, dict) else {"row": raw}
        rejected = Rejected(raw=row, problems=error.problems, location=location)
        await self.quarantine.upsert(quarantine_record(source=self.source_name, rejected=rejected))
        progress.rejected += 1
        for reason in rejected.reasons:
            progress.rejected_reasons[reason] = progress.rejected_reasons.get(reason, 0) + 1

    async def _event_details(self) -> dict[str, dict[str, Any]]:
        try:
            events = await self.source.events()
        except Exception:  # noqa: BLE001 - names and cities are a nicety; counts are what matter
            log.warning("event details unavailable; catalog keeps names from transactions")
            return {}
        return {str(event["id"]): event for event in events if isinstance(event, dict) and "id" in event}


def _start_from(checkpoint: SyncCheckpoint, overlap: timedelta) -> datetime | None:
    if checkpoint.updated_until is None:
        return None
    return checkpoint.updated_until - overlap
