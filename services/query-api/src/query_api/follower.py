"""Keeps a replica's read model current: start-up load, then the change feed, each change sent to the hub.

The load reads the same feed in latest-version mode from its beginning (``load_from_change_feed``).
Nothing between the load and the feed is missed: the all-versions continuation is taken *before* the
bulk load starts, so every write the load may not have seen comes again through the feed. A change
the load already holds comes again too and is ignored by ``ReadModel.upsert``'s rule (an older
``_ts``, or the same ``_ts`` and ``_etag``), so applying the overlap is idempotent.

Changes are published to the hub from the end of the first complete pass on (the catch-up). Before
it, a change may already be in the loaded rows and so not be seen as a change; the hub's replay
therefore starts at that point, and a client resuming from earlier is told to reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import polars as pl
import structlog
from opentelemetry import metrics

from query_api.changes import change_event
from query_api.loading import load_from_change_feed
from query_api.readmodel import served

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from query_api.changefeed import ChangeFeed, FeedPage, FeedRecord
    from query_api.hub import ChangeEvent, ChangeHub
    from query_api.readmodel import ReadModel

_T = TypeVar("_T")
_log = structlog.get_logger(__name__)
_meter = metrics.get_meter("query-api")
_CHANGES = _meter.create_counter(
    "query_api.feed.changes", description="Change feed records applied to the read model, by outcome."
)
_FAILURES = _meter.create_counter(
    "query_api.feed.failures",
    description="Failed start, load or change feed reads (each retried after a backoff).",
)

DEFAULT_POLL_SECONDS: Final = 0.25
"""Pause between two passes over the feed: with a pass's own time, a change shows well within 2 s."""
DEFAULT_STALE_AFTER_SECONDS: Final = 10.0
"""A replica whose last complete pass is older than this reports not ready."""


class ModelChanges(Protocol):
    """Runs a change to the read model while nothing else reads it (``ReadSide.change``)."""

    async def change(self, apply: Callable[[], _T]) -> _T:
        """``apply()`` with the model to itself; its result."""
        ...


class InlineChanges:
    """Applies each change at once on the event loop: for a model no other thread reads."""

    async def change(self, apply: Callable[[], _T]) -> _T:
        """``apply()`` here and now."""
        return apply()


class ReadSideNotReadyError(Exception):
    """The read model cannot answer yet (loading, catching up, or the feed has failed for a while)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits after consecutive failures: doubling from ``initial_seconds``, never above ``max_seconds``."""

    initial_seconds: float = 0.25
    max_seconds: float = 5.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1-based)."""
        return float(min(self.max_seconds, self.initial_seconds * 2 ** max(failures - 1, 0)))


@dataclass(slots=True)
class FollowerStatus:
    """What the follower has done, for readiness, logs and tests."""

    loaded: bool = False
    caught_up: bool = False
    position: int | None = None
    """The LSN of the last change read (None before the first, when the feed has several ranges)."""
    last_pass_at: float | None = None
    consecutive_failures: int = 0
    passes: int = 0
    applied: int = 0
    removed: int = 0
    rejected: int = 0
    unreadable: int = 0


class ChangeFeedFollower:
    """Loads the read model, then applies the change feed pass after pass and publishes each change."""

    def __init__(
        self,
        *,
        feed: ChangeFeed,
        model: ReadModel,
        hub: ChangeHub,
        changes: ModelChanges | None = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        backoff: Backoff | None = None,
        stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self._model = model
        self._changes = changes or InlineChanges()
        self._hub = hub
        self._poll_seconds = poll_seconds
        self._backoff = backoff or Backoff()
        self._stale_after_seconds = stale_after_seconds
        self._clock = clock
        self._continuation: str | None = None
        # Set when the feed has several ranges: events are then numbered here (see hub.py).
        self._local_sequence: int | None = None
        self._progress = asyncio.Condition()
        self.status = FollowerStatus()

    async def run(self) -> None:
        """Take the feed's start point, load, then follow the feed until cancelled."""
        start = await self._retrying("start", self._feed.start)
        self._continuation = start.continuation
        self.status.position = start.lsn
        if start.lsn is None:
            self._local_sequence = 0
        # Latest versions from the feed's beginning: each document once, deletes left out. A retry loads
        # into the same model, whose upsert rule skips the copies it already holds.
        report = await self._retrying("load", lambda: load_from_change_feed(self._feed, self._model))
        for rejected in report.rejected:
            _log.error("transaction refused", document_id=rejected.document_id, reason=rejected.reason)
        _log.info("read model loaded", read=report.read, held=len(self._model), refused=len(report.rejected))
        self.status.loaded = True
        await self._changed()
        while True:
            await self._retrying("follow", self._follow_once)
            await asyncio.sleep(self._poll_seconds)

    async def readiness_check(self) -> None:
        """A readiness check (``otcommon.health``): raises while the read side cannot answer."""
        if not self.status.loaded:
            raise ReadSideNotReadyError("the read model is loading")
        if not self.status.caught_up:
            raise ReadSideNotReadyError("the read model is catching up with the change feed")
        last = self.status.last_pass_at
        if last is None or self._clock() - last > self._stale_after_seconds:
            raise ReadSideNotReadyError("the change feed has not been read for a while")

    async def next_pass(self) -> int:
        """Wait until the pass after the current one ends; its number (for tests and benchmarks)."""
        target = self.status.passes + 2  # the pass under way may have started before the call
        await self.wait_until(lambda status: status.passes >= target)
        return self.status.passes

    async def wait_until(self, condition: Callable[[FollowerStatus], bool]) -> None:
        """Wait until the status meets ``condition`` (checked at each load, pass and failure)."""
        async with self._progress:
            await self._progress.wait_for(lambda: condition(self.status))

    async def _changed(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def _retrying(self, step: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        while True:
            try:
                result = await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure is retried; the log names it
                self.status.consecutive_failures += 1
                delay = self._backoff.delay(self.status.consecutive_failures)
                _FAILURES.add(1, {"step": step})
                _log.warning(
                    "change feed follower step failed",
                    step=step,
                    failures=self.status.consecutive_failures,
                    retry_in_seconds=delay,
                    error_type=type(error).__name__,
                    error=str(error),
                )
                await self._changed()
                await asyncio.sleep(delay)
                continue
            self.status.consecutive_failures = 0
            return result

    async def _follow_once(self) -> None:
        """One pass over the feed from the held continuation; each page applied before the next is read."""
        assert self._continuation is not None  # noqa: S101 - set by run() before following
        changes = 0
        async for page in self._feed.read(self._continuation):
            # Applied while no answer reads the model; published from the loop (the hub's thread).
            events = await self._changes.change(functools.partial(self._apply_page, page))
            if self.status.caught_up:
                self._hub.publish(self._numbered(events))
            changes += len(page.records)
            self._continuation = page.continuation
        if changes:
            _log.info("change feed pass applied", changes=changes, position=self.status.position)
        if not self.status.caught_up:
            if self._local_sequence is None:
                self._hub.begin_at(self.status.position or 0)
            else:
                self._hub.begin_at(0, epoch=uuid.uuid4().hex[:12])
            _log.info("read model caught up with the change feed", position=self.status.position)
        self.status.caught_up = True
        self.status.last_pass_at = self._clock()
        self.status.passes += 1
        await self._changed()

    def _apply_page(self, page: FeedPage) -> list[ChangeEvent]:
        """The page applied to the model; the changes it made (none before catch-up)."""
        for unreadable in page.unreadable:
            self.status.unreadable += 1
            _CHANGES.add(1, {"outcome": "unreadable"})
            _log.error("change feed record unreadable", lsn=unreadable.lsn, reason=unreadable.reason)
        events: list[ChangeEvent] = []
        for run in _runs(page.records):
            if run[0].operation == "delete":
                events.extend(self._apply_deletes(run))
            else:
                events.extend(self._apply_versions(run))
        if page.records:
            self.status.position = max(record.lsn for record in page.records)
        return events

    def _numbered(self, events: list[ChangeEvent]) -> list[ChangeEvent]:
        """Events as published: in LSN order on a one-range feed, else numbered here in the feed's order."""
        if self._local_sequence is None:
            return sorted(events, key=lambda event: event.position)
        numbered = []
        for event in events:
            self._local_sequence += 1
            numbered.append(dataclasses.replace(event, position=self._local_sequence))
        return numbered

    def _apply_versions(self, records: Sequence[FeedRecord]) -> list[ChangeEvent]:
        last_lsn = {record.document_id: record.lsn for record in records}
        before = self._served(last_lsn)
        report = self._model.upsert([record.document for record in records if record.document is not None])
        after = self._served(last_lsn)
        self.status.applied += report.applied
        self.status.rejected += len(report.rejected)
        _CHANGES.add(report.applied, {"outcome": "applied"})
        _CHANGES.add(report.stale, {"outcome": "stale"})
        _CHANGES.add(len(report.rejected), {"outcome": "refused"})
        for rejected in report.rejected:
            _log.error("transaction refused", document_id=rejected.document_id, reason=rejected.reason)
        return [
            event
            for document_id, lsn in last_lsn.items()
            if (event := change_event(position=lsn, old=before.get(document_id), new=after.get(document_id)))
        ]

    def _apply_deletes(self, records: Sequence[FeedRecord]) -> list[ChangeEvent]:
        events = []
        for record in records:
            before = self._served({record.document_id: record.lsn}).get(record.document_id)
            if not self._model.delete(record.document_id, ts=record.ts):
                continue
            self.status.removed += 1
            _CHANGES.add(1, {"outcome": "removed"})
            if event := change_event(position=record.lsn, old=before, new=None):
                events.append(event)
        return events

    def _served(self, ids: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The served rows of these ids; nothing before catch-up, when no event is published."""
        if not self.status.caught_up:
            return {}
        # frame() is unscoped and not copied: the page's few ids are picked from it directly.
        rows = self._model.frame().filter(pl.col("id").is_in(list(ids)))
        return {row["id"]: row for row in served(rows)}


def _runs(records: Sequence[FeedRecord]) -> list[list[FeedRecord]]:
    """Consecutive records split where deletes start or stop, so versions go to the model in batches."""
    runs: list[list[FeedRecord]] = []
    for record in records:
        is_delete = record.operation == "delete"
        if runs and (runs[-1][0].operation == "delete") == is_delete:
            runs[-1].append(record)
        else:
            runs.append([record])
    return runs
