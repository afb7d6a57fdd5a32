"""The coordinator around one run: stopping while the lease is held elsewhere, releasing after a run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ingest_fakes import World, api_row, container
from structlog.testing import capture_logs

from ingest.coordinator import SyncCoordinator
from ingest.lease import SyncLease
from ingest.schedule import Schedule
from otcommon.store import StoreError

HOURLY = Schedule.parse("0 0 * * * *")


class LeaseStore:
    """The ``state`` container, configured for these tests: ``reads`` wakes on each read, and
    replacing a document fails while ``writes_fail`` (Cosmos DB gone after the lease was created).
    """

    def __init__(self) -> None:
        self._inner = container("state")
        self.reads: asyncio.Queue[str] = asyncio.Queue()
        self.writes_fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        self.reads.put_nowait(document_id)
        return await self._inner.read(document_id, partition_key=partition_key)

    async def replace(self, document: Any, *, etag: str | None = None) -> dict[str, Any]:
        if self.writes_fail:
            raise StoreError("Cosmos DB is unreachable")
        return await self._inner.replace(document, etag=etag)


def coordinator(world: World, store: LeaseStore, holder: str = "this") -> SyncCoordinator:
    lease = SyncLease(store, name="sync:test", holder=holder, duration_seconds=300)
    return SyncCoordinator(runner=world.runner, lease=lease, schedule=HOURLY)


async def test_a_stop_while_another_replica_holds_the_lease_reports_stopped(world: World):
    store = LeaseStore()
    other = SyncLease(store, name="sync:test", holder="other", duration_seconds=300)
    assert await other.try_acquire()
    this = coordinator(world, store)
    run = asyncio.create_task(this.run_once(on_demand=True))
    # Two reads: the failed take, then the look at who holds it; the run then waits for it.
    for _ in range(2):
        await store.reads.get()
    this.request_stop()
    progress = await run
    assert progress is not None
    assert (progress.state, progress.pages, progress.started_at) == ("stopped", 0, None)
    assert world.source.requested_since == []  # nothing was synced
    assert (await other.state()).holder == "other"


async def test_a_failed_lease_release_does_not_hide_the_runs_own_error(world: World):
    world.source.put(api_row(1))
    world.source.fail_after_pages = 0
    store = LeaseStore()
    this = coordinator(world, store)
    # The lease document is created on the first take, so only the release replaces it.
    store.writes_fail = True
    with capture_logs() as logs, pytest.raises(ConnectionError, match="killed") as raised:
        await this.run_once(on_demand=True)
    assert raised.value.__notes__ == [
        "releasing the sync lease failed too: StoreError: Cosmos DB is unreachable"
    ]
    assert any(entry["event"] == "sync lease release failed; it expires by itself" for entry in logs)


async def test_a_failed_lease_release_after_a_good_run_is_logged_and_the_run_reported(world: World):
    world.source.put(api_row(1))
    store = LeaseStore()
    this = coordinator(world, store)
    store.writes_fail = True
    with capture_logs() as logs:
        progress = await this.run_once(on_demand=True)
    assert progress is not None
    assert (progress.state, progress.created) == ("completed", 1)
    assert any(entry["event"] == "sync lease release failed; it expires by itself" for entry in logs)
