"""An in-memory change feed and a small server-sent events reader, for the live update tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otcommon.store import StoreError
from query_api.changefeed import FeedPage, FeedRecord, FeedStart

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import aiohttp


class ListChangeFeed:
    """A change feed over a list: positions are list indexes + 1, continuations their text.

    ``failures`` makes the next that many reads fail (a configured fault, not a patch);
    ``during_load`` runs once the load has read its first page (a write the load does not see).
    """

    def __init__(self, *, page_size: int = 3, during_load: Callable[[], object] | None = None) -> None:
        self.records: list[FeedRecord] = []
        self.page_size = page_size
        self.failures = 0
        self.reads = 0
        self.during_load = during_load

    def write(self, document: dict[str, Any]) -> FeedRecord:
        record = FeedRecord(
            lsn=len(self.records) + 1,
            operation="replace",
            document_id=str(document["id"]),
            ts=int(document["_ts"]),
            document=document,
        )
        self.records.append(record)
        return record

    def delete(self, document_id: str, *, ts: int) -> FeedRecord:
        record = FeedRecord(lsn=len(self.records) + 1, operation="delete", document_id=document_id, ts=ts)
        self.records.append(record)
        return record

    async def start(self) -> FeedStart:
        return FeedStart(continuation=str(len(self.records)), lsn=len(self.records))

    async def read(self, continuation: str) -> AsyncIterator[FeedPage]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise StoreError("change feed unreachable (configured fault)")
        index = int(continuation)
        while index < len(self.records):
            page = self.records[index : index + self.page_size]
            index += len(page)
            yield FeedPage(records=page, continuation=str(index))
        yield FeedPage(records=[], continuation=str(index))

    async def read_latest_versions(self, *, page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Latest-version mode from the beginning: each live document once, in the order it last changed."""
        latest: dict[str, FeedRecord] = {}
        for record in self.records:  # the snapshot the load reads: later writes come through read()
            latest.pop(record.document_id, None)
            if record.operation != "delete":
                latest[record.document_id] = record
        documents = [record.document for record in latest.values() if record.document is not None]
        for start in range(0, len(documents), page_size):
            yield documents[start : start + page_size]
            if start == 0 and self.during_load is not None:
                self.during_load()


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


async def read_event(response: aiohttp.ClientResponse, *, skip_comments: bool = True) -> ServerSentEvent:
    """The next event of a text/event-stream response (comment-only blocks skipped unless asked)."""
    current = ServerSentEvent()
    data: list[str] = []
    while True:
        raw = await response.content.readline()
        if not raw:
            raise EOFError("the stream ended")
        line = raw.decode().rstrip("\n")
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                current.comments.append(value)
            elif name == "data":
                data.append(value)
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            continue
        if data or current.id is not None or current.event != "message":
            current.data = "\n".join(data)
            return current
        if not skip_comments and current.comments:
            return current
        current = ServerSentEvent()


async def read_changes(response: aiohttp.ClientResponse, count: int) -> list[ServerSentEvent]:
    """The next ``count`` events of the stream."""
    return [await read_event(response) for _ in range(count)]
