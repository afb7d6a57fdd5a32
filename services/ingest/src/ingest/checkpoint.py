"""Where incremental sync resumes: the newest source ``updatedAt`` whose page is fully stored and queued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from otcommon.schemas import format_timestamp, parse_timestamp
from otcommon.store import DocumentNotFoundError, read_modify_write

if TYPE_CHECKING:
    from otcommon.store import Document, DocumentContainer


@dataclass(frozen=True, slots=True)
class SyncCheckpoint:
    """The checkpoint of one source."""

    source: str
    updated_until: datetime | None

    @property
    def document_id(self) -> str:
        """The checkpoint's id in the ``state`` container."""
        return f"checkpoint:{self.source}"


class CheckpointStore:
    """Reads and advances checkpoints in the ``state`` container (partitioned by ``/id``)."""

    def __init__(self, container: DocumentContainer) -> None:
        self._container = container

    async def load(self, source: str) -> SyncCheckpoint:
        """The source's checkpoint; one with no position when the source never synced."""
        checkpoint = SyncCheckpoint(source=source, updated_until=None)
        try:
            document = await self._container.read(
                checkpoint.document_id, partition_key=checkpoint.document_id
            )
        except DocumentNotFoundError:
            return checkpoint
        value = document.get("updatedUntil")
        return SyncCheckpoint(source=source, updated_until=parse_timestamp(value) if value else None)

    async def save(self, checkpoint: SyncCheckpoint) -> None:
        """Advance the checkpoint (called only after the page it covers is stored and queued).

        It never moves backwards: a replica that lost its lease and saves late cannot undo the
        progress of the one that took over.
        """
        until = checkpoint.updated_until
        if until is None:
            return
        document = {
            "id": checkpoint.document_id,
            "kind": "checkpoint",
            "source": checkpoint.source,
            "updatedUntil": format_timestamp(until),
            "savedAt": format_timestamp(datetime.now(tz=UTC)),
        }

        def advance(current: Document) -> Document | None:
            stored = current.get("updatedUntil")
            return None if stored and parse_timestamp(stored) >= until else document

        await read_modify_write(
            self._container,
            checkpoint.document_id,
            partition_key=checkpoint.document_id,
            mutate=advance,
            create=lambda: document,
        )
