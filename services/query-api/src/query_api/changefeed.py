"""The transactions container's change feed: all-versions-and-deletes mode pass by pass, and the load's read.

Each replica reads the feed itself (pull model) and keeps its continuation in memory; nothing is
shared between replicas. The mode gives deletes (and expiries by time to live) as well as every
create and replace, each with its log sequence number (LSN), which orders the changes and names
them on the stream. The start-up load reads the same feed in latest-version mode from the
beginning (``read_latest_versions``), the one mode that can start there.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from azure.cosmos import exceptions as cosmos_errors

from otcommon.store import StoreError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from azure.core.async_paging import AsyncPageIterator
    from azure.cosmos.aio import ContainerProxy

ALL_VERSIONS_AND_DELETES: Final = "AllVersionsAndDeletes"
FEED_PAGE_SIZE: Final = 500

Operation = Literal["create", "replace", "delete"]


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One version of a document, or its deletion, at its place (LSN) in the feed."""

    lsn: int
    operation: Operation
    document_id: str
    ts: int
    """When the change was written (seconds, the document's ``_ts`` or the deletion's ``crts``)."""
    document: dict[str, Any] | None = None
    """The document as written; None for a deletion."""


@dataclass(frozen=True, slots=True)
class UnreadableRecord:
    """A feed record the follower cannot apply (logged and counted, never dropped quietly)."""

    reason: str
    lsn: int | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Records of one feed answer and the continuation that resumes right after them."""

    records: list[FeedRecord]
    continuation: str
    unreadable: list[UnreadableRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FeedStart:
    """Where a follower starts: the continuation at "now", and its LSN when the feed has one range."""

    continuation: str
    lsn: int | None


class ChangeFeed(Protocol):
    """The change feed the follower reads."""

    async def start(self) -> FeedStart:
        """A continuation at the current end of the feed: later changes are read from it."""
        ...

    def read(self, continuation: str) -> AsyncIterator[FeedPage]:
        """Every change after ``continuation``, page by page; the last page ends the pass (may be empty)."""
        ...

    def read_latest_versions(self, *, page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every document in its latest version (deleted ones left out), from the feed's beginning.

        Pages of at most ``page_size`` documents until the feed has nothing new: the start-up load.
        """
        ...


class CosmosChangeFeed:
    """The change feed of one Cosmos DB container through the azure-cosmos async SDK.

    The SDK hands the continuation out only through the client's last response headers. No
    request of another task can come between the feed request and the moment they are read here
    (nothing is awaited in between), so a client shared with the request handlers is safe.
    """

    def __init__(self, container: ContainerProxy, *, page_size: int = FEED_PAGE_SIZE) -> None:
        self._container = container
        self._page_size = page_size

    async def start(self) -> FeedStart:
        """Read the feed from now (all-versions mode cannot start earlier) for its continuation."""
        # Changes this read returns were written after "now", so the load that follows holds them.
        pages = [page async for page in self.read(None)]
        continuation = pages[-1].continuation
        return FeedStart(continuation=continuation, lsn=single_range_lsn(continuation))

    async def read(self, continuation: str | None) -> AsyncIterator[FeedPage]:
        """Pages of changes after ``continuation`` (None: from now); the last page carries where to resume."""
        options: dict[str, Any] = {"max_item_count": self._page_size}
        if continuation is None:
            options["mode"] = ALL_VERSIONS_AND_DELETES
        else:
            options["continuation"] = continuation
        pages = cast("AsyncPageIterator[Any]", self._container.query_items_change_feed(**options).by_page())
        try:
            async for page in pages:
                raw = [dict(record) async for record in page]
                token = str(pages.continuation_token)
                records, unreadable = parse_records(raw)
                yield FeedPage(records=records, continuation=token, unreadable=unreadable)
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise StoreError(f"change feed read failed: Cosmos DB answered {exc.status_code}") from exc
        # The pass ended on an answer with nothing new: its continuation is the next start.
        headers = self._container.client_connection.last_response_headers
        yield FeedPage(records=[], continuation=str(headers["etag"]))

    async def read_latest_versions(self, *, page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """The latest-version feed from the beginning; the SDK's pages end at its "nothing new" (304)."""
        feed = self._container.query_items_change_feed(start_time="Beginning", max_item_count=page_size)
        pages = cast("AsyncPageIterator[Any]", feed.by_page())
        try:
            async for page in pages:
                yield [dict(document) async for document in page]
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise StoreError(f"change feed load failed: Cosmos DB answered {exc.status_code}") from exc


def parse_records(raw: list[dict[str, Any]]) -> tuple[list[FeedRecord], list[UnreadableRecord]]:
    """All-versions-and-deletes records as FeedRecords; records missing their metadata are unreadable."""
    records: list[FeedRecord] = []
    unreadable: list[UnreadableRecord] = []
    for item in raw:
        try:
            records.append(_parse_record(item))
        except (KeyError, TypeError, ValueError) as exc:
            lsn = item.get("metadata", {}).get("lsn") if isinstance(item.get("metadata"), dict) else None
            unreadable.append(UnreadableRecord(reason=f"{type(exc).__name__}: {exc}", lsn=lsn))
    return records, unreadable


def _parse_record(item: Mapping[str, Any]) -> FeedRecord:
    metadata = item["metadata"]
    operation = metadata["operationType"]
    lsn = int(metadata["lsn"])
    if operation == "delete":
        return FeedRecord(
            lsn=lsn, operation="delete", document_id=str(metadata["id"]), ts=int(metadata["crts"])
        )
    if operation not in {"create", "replace"}:
        raise ValueError(f"operationType {operation!r} is not create, replace or delete")
    document = dict(item["current"])
    return FeedRecord(
        lsn=lsn,
        operation=operation,
        document_id=str(document["id"]),
        ts=int(document["_ts"]),
        document=document,
    )


def single_range_lsn(continuation: str) -> int | None:
    """The LSN a continuation stands at when it covers one feed range (one physical partition), else None.

    The SDK's continuation is base64 JSON holding one etag (``"<lsn>"``) per feed range. With more
    than one range, positions are not one number and resumes fall back to reloading.
    """
    try:
        state = json.loads(base64.b64decode(continuation, validate=True))
        ranges = state["continuation"]["continuation"]
        if len(ranges) != 1:
            return None
        return int(str(ranges[0]["token"]).strip('"'))
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
