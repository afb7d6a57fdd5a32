"""Filling the read model at start: from the change feed (latest versions from the beginning), or a container.

With a change feed (every deployment), the load reads the feed in latest-version mode from its
beginning: each document once in its latest version, deletes left out, in pages that cost their own
size (the change feed processor's own bulk read on Azure, and linear in the Cosmos DB stand-in,
whose cross-partition ``SELECT * FROM c`` rebuilds the whole container for every page). Without one
(tests and the benchmark's pages file), it pages ``SELECT * FROM c`` through the store interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from otcommon.store import DocumentContainer
    from query_api.changefeed import ChangeFeed
    from query_api.documents import RejectedDocument
    from query_api.readmodel import ReadModel

ALL_TRANSACTIONS: Final = "SELECT * FROM c"
"""Every transaction document, across partitions (no ORDER BY, so pages resume anywhere)."""

LOAD_PAGE_SIZE: Final = 1000
FEED_LOAD_PAGE_SIZE: Final = 2000
"""Documents per change feed page at load: about 2.5 MB of JSON, under the 4 MB a Cosmos DB answer holds."""


@dataclass(slots=True)
class LoadReport:
    """How many documents the start-up load read, held and refused."""

    read: int = 0
    applied: int = 0
    rejected: list[RejectedDocument] = field(default_factory=list)


async def load_from_change_feed(
    feed: ChangeFeed, model: ReadModel, *, page_size: int = FEED_LOAD_PAGE_SIZE
) -> LoadReport:
    """Read every transaction's latest version from the feed's beginning until it has nothing new."""
    return await _load_pages(feed.read_latest_versions(page_size=page_size), model)


async def load_transactions(
    container: DocumentContainer, model: ReadModel, *, page_size: int = LOAD_PAGE_SIZE
) -> LoadReport:
    """Read every transaction page by page through a query (a source without a change feed)."""
    return await _load_pages(
        (page.items async for page in container.query(ALL_TRANSACTIONS, page_size=page_size)), model
    )


async def _load_pages(pages: AsyncIterable[list[dict[str, Any]]], model: ReadModel) -> LoadReport:
    """Upsert each page before the next is read; refused documents are reported."""
    report = LoadReport()
    async for documents in pages:
        outcome = model.upsert(documents)
        report.read += len(documents)
        report.applied += outcome.applied
        report.rejected.extend(outcome.rejected)
    return report
