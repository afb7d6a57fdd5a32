"""Runs syncs under the lease, on the schedule or on demand, one at a time.

A replica that finds the lease held waits: if the holder releases it, that replica's run covered
this tick; if the holder dies, the lease expires and this replica takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from ingest.lease import LeaseLostError
from ingest.sync import SyncProgress
from otcommon.schemas import format_timestamp

if TYPE_CHECKING:
    from collections.abc import Callable

    from ingest.lease import SyncLease
    from ingest.schedule import Schedule
    from ingest.sync import SyncRunner

log = structlog.get_logger("ingest.coordinator")


class SyncAlreadyRunningError(Exception):
    """A sync is running in this process already."""


class SyncCoordinator:
    """Owns the lease and the one running sync of this process."""

    def __init__(
        self,
        *,
        runner: SyncRunner,
        lease: SyncLease,
        schedule: Schedule,
        clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    ) -> None:
        self._runner = runner
        self._lease = lease
        self._schedule = schedule
        self._clock = clock
        self._stop_run = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._running: asyncio.Task[SyncProgress | None] | None = None
        self.progress = SyncProgress()

    @property
    def is_running(self) -> bool:
        """True while a sync runs in this process."""
        return self._running is not None and not self._running.done()

    def start_now(self, *, since: datetime | None = None) -> asyncio.Task[SyncProgress | None]:
        """Start a sync in the background (on-demand); SyncAlreadyRunningError if one runs."""
        if self.is_running:
            raise SyncAlreadyRunningError("a sync is already running")
        self._running = asyncio.create_task(self.run_once(since=since, on_demand=True), name="ingest-sync")
        return self._running

    def request_stop(self) -> None:
        """Stop a running sync at its next page boundary (SIGTERM), and take no new one."""
        self._shutdown.set()
        self._stop_run.set()

    async def wait_idle(self) -> None:
        """Return when no sync runs in this process (its outcome is in ``progress``)."""
        if self._running is not None and not self._running.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._running)

    async def run_once(
        self, *, since: datetime | None = None, on_demand: bool = False
    ) -> SyncProgress | None:
        """Take the lease (waiting while another live replica holds it) and sync.

        Returns None for a scheduled tick whose sync another replica ran (it released the lease).
        A shutdown before the lease is taken returns a ``stopped`` progress that synced nothing. A
        backfill (``since``) or an on-demand request always runs itself once the lease is free.
        """
        # Created before waiting, so a stop requested meanwhile reaches the run.
        self._stop_run = asyncio.Event()
        if self._shutdown.is_set():
            return _stopped_before_start()
        while not await self._lease.try_acquire():
            state = await self._lease.state()
            if state.holder is None and since is None and not on_demand:
                log.info("another replica completed the sync")
                return None
            log.info("another replica holds the sync lease; waiting", holder=state.holder)
            if await _wait(self._shutdown, self._lease.duration_seconds / 3):
                log.info("stopped while waiting for the sync lease", holder=state.holder)
                return _stopped_before_start()
        if self._shutdown.is_set():
            self._stop_run.set()
        progress = SyncProgress()
        self.progress = progress
        renewal = asyncio.create_task(self._keep_lease(), name="ingest-lease")
        try:
            await self._runner.run(progress=progress, since=since, stop=self._stop_run)
        except BaseException as run_error:
            await self._end_run(renewal, run_error=run_error)
            raise
        await self._end_run(renewal, run_error=None)
        return progress

    async def _end_run(self, renewal: asyncio.Task[None], *, run_error: BaseException | None) -> None:
        """Stop renewing and release the lease; a failed release never replaces the run's own error."""
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        try:
            await self._lease.release()
        except Exception as exc:  # noqa: BLE001 - logged; the lease expires by itself within one period
            cause = f"{type(exc).__name__}: {exc}"
            log.warning("sync lease release failed; it expires by itself", error=cause)
            if run_error is not None:
                run_error.add_note(f"releasing the sync lease failed too: {cause}")

    async def serve(self) -> None:
        """Sync on the schedule until shutdown; a failed run is logged and the next tick tries again."""
        while not self._shutdown.is_set():
            now = self._clock()
            due = self._schedule.next_after(now)
            log.info("next scheduled sync", at=due.isoformat())
            if await _wait(self._shutdown, (due - now).total_seconds()):
                return
            if self.is_running:
                continue
            try:
                self._running = asyncio.create_task(self.run_once(), name="ingest-sync")
                await asyncio.shield(self._running)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduled sync failed; the next tick retries from the checkpoint")

    async def shutdown(self, *, grace_seconds: float) -> None:
        """Stop the schedule; a running sync ends at its next page boundary (within the grace)."""
        self._shutdown.set()
        self._stop_run.set()
        if self._running is not None and not self._running.done():
            try:
                async with asyncio.timeout(grace_seconds):
                    await asyncio.shield(self._running)
            except TimeoutError:
                log.warning("sync did not reach a page boundary in time; cancelling it")
                self._running.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._running
            except Exception:  # noqa: BLE001 - its failure is already logged and in its progress
                log.debug("sync ended with an error during shutdown")

    async def _keep_lease(self) -> None:
        interval = self._lease.duration_seconds / 3
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._lease.renew()
                renewed = time.monotonic()
            except LeaseLostError:
                log.warning("sync lease lost; stopping at the next page boundary")
                self._stop_run.set()
                return
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried while the lease lasts
                if time.monotonic() - renewed >= self._lease.duration_seconds - interval:
                    # Another replica may take over any moment now: this one must not keep writing.
                    log.warning("sync lease could not be renewed in time; stopping", error=type(exc).__name__)
                    self._stop_run.set()
                    return
                log.warning("sync lease renewal failed; retrying", error=type(exc).__name__)


def _stopped_before_start() -> SyncProgress:
    """The progress of a run stopped before it took the lease: nothing synced, nothing changed."""
    return SyncProgress(state="stopped", finished_at=format_timestamp(datetime.now(tz=UTC)))


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` up to ``seconds``; True if it was set."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return False
    return True
