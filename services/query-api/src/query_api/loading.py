"""Filling the read model from the transactions container at start, through the store interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from otcommon.store import DocumentContainer
    from query_api.documents import RejectedDocument
    from query_api.readmodel import ReadModel

ALL_TRANSACTIONS: Final = "SELECT * FROM c"
"""Every transaction document, across partitions (no ORDER BY, so pages resume anywhere)."""

LOAD_PAGE_SIZE: Final = 1000


@dataclass(slots=True)
class LoadReport:
    """How many documents the start-up load read, held and refused."""

    read: int = 0
    applied: int = 0
    rejected: list[RejectedDocument] = field(default_factory=list)


async def load_transactions(
    container: DocumentContainer, model: ReadModel, *, page_size: int = LOAD_PAGE_SIZE
) -> LoadReport:
    """Read every transaction page by page into the read model; refused documents are reported."""
    report = LoadReport()
    async for page in container.query(ALL_TRANSACTIONS, page_size=page_size):
        outcome = model.upsert(page.items)
        report.read += len(page.items)
        report.applied += outcome.applied
        report.rejected.extend(outcome.rejected)
    return report
