"""Importing an export file: stream, validate, store, queue, and report what was found.

The file is read in chunks; while one chunk is stored and queued, the next is read and validated,
so parsing overlaps with the round trips to Cosmos DB and Service Bus. Chunks are stored one after
the other, in file order; at most two are in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ingest.exportfile import ExportFileError, ExportRecord, read_export
from ingest.mapping import Rejected, quarantine_record
from otcommon.schemas import ExportRow, RowValidationError, TicketTransaction

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from ingest.catalog import EventCatalog
    from ingest.queueing import EnrichmentQueue
    from ingest.storage import TransactionWriter
    from otcommon.store import DocumentContainer

log = structlog.get_logger("ingest.import")

CHUNK_ROWS = 2000
"""Rows stored together: enough for full batches per event in files that mix many events."""
_YIELD_EVERY_ROWS = 100
"""Validating a chunk hands the loop back this often, so the previous chunk's writes keep moving."""
LISTED_REJECTIONS = 100
"""The report names this many rejected rows; the rest are counted (all are in quarantine)."""
_TICKET_ID_CHARS = 64


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """Where a rejected row is and why; only its ticketId identifies it (other cells may be personal)."""

    line: int
    ticket_id: str | None
    reasons: tuple[str, ...]

    def render(self) -> str:
        """One line for a person."""
        return f"line {self.line}  ticketId {self.ticket_id or '-'}  {'; '.join(self.reasons)}"

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {"line": self.line, "ticketId": self.ticket_id, "reasons": list(self.reasons)}


@dataclass
class ImportReport:
    """The validation report an import ends with."""

    file: str
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    queued: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    rejected_rows: list[RejectedRow] = field(default_factory=list)
    """The first ``LISTED_REJECTIONS`` rejected rows, in file order; ``rejected`` counts them all."""
    duplicate_ticket_ids: int = 0
    redeemed_more_than_sold: int = 0
    zero_tickets_with_amount: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    """Why the import stopped early; rows before that point are stored (a re-import skips them)."""

    @property
    def stored(self) -> int:
        """Rows written (created or updated)."""
        return self.created + self.updated

    def render(self) -> str:
        """The report for a person."""
        lines = [
            f"Import of {self.file}",
            f"  rows read            {self.rows_read}",
            f"  stored               {self.stored} ({self.created} new, {self.updated} changed)",
            f"  unchanged            {self.unchanged}",
            f"  rejected             {self.rejected}",
        ]
        lines.extend(f"    {count:>6}  {reason}" for reason, count in self.rejected_by_reason.most_common())
        if self.rejected_rows:
            lines.append(f"    rows ({self._listed_rejections()}):")
            lines.extend(f"      {row.render()}" for row in self.rejected_rows)
        lines += [
            f"  queued for enrichment {self.queued}",
            f"  duplicate ticketIds  {self.duplicate_ticket_ids}",
            f"  redeemed > sold      {self.redeemed_more_than_sold}",
            f"  0 tickets, amount>0  {self.zero_tickets_with_amount}",
        ]
        if self.ignored_columns:
            lines.append(f"  ignored columns      {', '.join(self.ignored_columns)}")
        if self.error:
            lines.append(f"  STOPPED EARLY        {self.error}")
            lines.append("  rows before that point are stored; fix the file and import it again")
        lines.append(f"  took                 {self.seconds:.1f}s")
        return "\n".join(lines)

    def _listed_rejections(self) -> str:
        listed = len(self.rejected_rows)
        return f"all {listed}" if listed == self.rejected else f"the first {listed} of {self.rejected}"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "file": self.file,
            "rowsRead": self.rows_read,
            "stored": self.stored,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "rejectedByReason": dict(self.rejected_by_reason),
            "rejectedRows": [row.to_json() for row in self.rejected_rows],
            "rejectedRowsNotListed": self.rejected - len(self.rejected_rows),
            "queued": self.queued,
            "duplicateTicketIds": self.duplicate_ticket_ids,
            "redeemedMoreThanSold": self.redeemed_more_than_sold,
            "zeroTicketsWithAmount": self.zero_tickets_with_amount,
            "ignoredColumns": self.ignored_columns,
            "error": self.error,
        }


@dataclass
class FileImporter:
    """Imports export files into the same containers and queue as the API sync."""

    writer: TransactionWriter
    queue: EnrichmentQueue
    quarantine: DocumentContainer
    catalog: EventCatalog

    async def run(
        self,
        path: Path,
        *,
        event_id: str | None = None,
        encoding: str = "utf-8-sig",
        on_rows: Callable[[int], object] = lambda _: None,
    ) -> ImportReport:
        """Import one file; raises ExportFileError for a file that cannot be read at all."""
        started = time.perf_counter()
        header, records = read_export(path, encoding=encoding)
        report = ImportReport(file=path.name, ignored_columns=header.ignored)
        source = f"file:{path.name}"
        try:
            await self._import_rows(records, report, source=source, event_id=event_id, on_rows=on_rows)
        except ExportFileError as exc:
            report.error = str(exc)
        await self.catalog.refresh_pending()
        report.seconds = time.perf_counter() - started
        log.info(
            "import finished",
            file=path.name,
            rows=report.rows_read,
            created=report.created,
            updated=report.updated,
            rejected=report.rejected,
            queued=report.queued,
            stopped_early=report.error is not None,
        )
        return report

    async def _import_rows(
        self,
        records: Iterator[ExportRecord],
        report: ImportReport,
        *,
        source: str,
        event_id: str | None,
        on_rows: Callable[[int], object],
    ) -> None:
        # 12-byte digests keep the duplicate check's memory small (about 100 bytes a row).
        seen_tickets: set[bytes] = set()
        storing: asyncio.Task[None] | None = None
        try:
            for chunk in _chunks(records, CHUNK_ROWS):
                transactions: list[TicketTransaction] = []
                for position, record in enumerate(chunk, start=1):
                    report.rows_read += 1
                    transaction = await self._map(record, source=source, event_id=event_id, report=report)
                    if position % _YIELD_EVERY_ROWS == 0:
                        await asyncio.sleep(0)  # let the previous chunk's writes progress meanwhile
                    if transaction is None:
                        continue
                    ticket_key = hashlib.blake2b(
                        f"{transaction.event_id}\x1f{transaction.ticket_id}".encode(), digest_size=12
                    ).digest()
                    if ticket_key in seen_tickets:
                        report.duplicate_ticket_ids += 1
                    seen_tickets.add(ticket_key)
                    transactions.append(transaction)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(
                    self._store(transactions, rows=len(chunk), report=report, on_rows=on_rows)
                )
        finally:
            if storing is not None:
                # Rows read before an error in the file are still stored, as the report says.
                await storing

    async def _store(
        self,
        transactions: list[TicketTransaction],
        *,
        rows: int,
        report: ImportReport,
        on_rows: Callable[[int], object],
    ) -> None:
        await self.catalog.mark({transaction.event_id for transaction in transactions})
        changes = await self.writer.write(transactions)
        report.created += changes.created
        report.updated += changes.updated
        report.unchanged += changes.unchanged
        report.queued += await self.queue.enqueue(changes.pending)
        on_rows(rows)

    async def _map(
        self, record: ExportRecord, *, source: str, event_id: str | None, report: ImportReport
    ) -> TicketTransaction | None:
        try:
            row = ExportRow.parse(record.values)
        except RowValidationError as exc:
            rejected = Rejected(raw=record.values, problems=exc.problems, location=f"line {record.line}")
            await self.quarantine.upsert(quarantine_record(source=source, rejected=rejected))
            report.rejected += 1
            report.rejected_by_reason.update(rejected.reasons)
            if len(report.rejected_rows) < LISTED_REJECTIONS:
                report.rejected_rows.append(
                    RejectedRow(
                        line=record.line,
                        ticket_id=_ticket_id(record.values.get("ticketId")),
                        reasons=tuple(rejected.reasons),
                    )
                )
            return None
        if row.total_ticket_redeemed > row.total_tickets:
            report.redeemed_more_than_sold += 1
        if row.total_tickets == 0 and row.total_amount > 0:
            report.zero_tickets_with_amount += 1
        return TicketTransaction.from_export_row(row, event_id=event_id, source=source)


def _ticket_id(value: Any) -> str | None:
    """A rejected row's ticketId as the report shows it: text, cut short, None when empty."""
    text = "" if value is None else str(value).strip()
    return text[:_TICKET_ID_CHARS] or None


def _chunks(records: Iterator[ExportRecord], size: int) -> Iterator[list[ExportRecord]]:
    chunk: list[ExportRecord] = []
    try:
        for record in records:
            chunk.append(record)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except ExportFileError:
        # Rows read before a file error are imported too, so the report's "stored up to here" holds.
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk
