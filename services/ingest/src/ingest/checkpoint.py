"""Where incremental sync resumes: the newest source ``updatedAt`` whose page is fully stored and queued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from otcommon.schemas import format_timestamp, parse_timestamp
from otcommon.store import DocumentExistsError, DocumentNotFoundError, EtagMismatchError

if TYPE_CHECKING:
    from otcommon.store import DocumentContainer


_SAVE_ATTEMPTS = 8


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
        if checkpoint.updated_until is None:
            return
        document = {
            "id": checkpoint.document_id,
            "kind": "checkpoint",
            "source": checkpoint.source,
            "updatedUntil": format_timestamp(checkpoint.updated_until),
            "savedAt": format_timestamp(datetime.now(tz=UTC)),
        }
        for _ in range(_SAVE_ATTEMPTS):
            try:
                current = await self._container.read(
                    checkpoint.document_id, partition_key=checkpoint.document_id
                )
            except DocumentNotFoundError:
                try:
                    await self._container.create(document)
                except DocumentExistsError:
                    continue
                return
            stored = current.get("updatedUntil")
            if stored and parse_timestamp(stored) >= checkpoint.updated_until:
                return
            try:
                await self._container.replace(document, etag=current["_etag"])
            except EtagMismatchError:
                continue
            return
        raise EtagMismatchError(self._container.name, checkpoint.document_id)
