"""The documents ingest keeps in ``state``: the checkpoint and the catalog backlog."""

from __future__ import annotations

from datetime import timedelta

from ingest_fakes import T0, container

from ingest.catalog import CatalogBacklog
from ingest.checkpoint import CheckpointStore, SyncCheckpoint


async def test_a_checkpoint_is_created_then_only_advanced():
    checkpoints = CheckpointStore(container("state"))
    await checkpoints.save(SyncCheckpoint("api", T0))
    await checkpoints.save(SyncCheckpoint("api", T0 + timedelta(hours=1)))
    # A replica that lost its lease saves late: it cannot undo the newer progress.
    await checkpoints.save(SyncCheckpoint("api", T0 + timedelta(minutes=30)))
    assert (await checkpoints.load("api")).updated_until == T0 + timedelta(hours=1)
    assert (await checkpoints.load("other")).updated_until is None


async def test_the_backlog_remembers_events_until_they_are_removed():
    state = container("state")
    backlog = CatalogBacklog(state)
    await backlog.add(["ev1", "ev2"])
    await backlog.add(["ev2", "ev3"])
    assert await backlog.pending() == {"ev1", "ev2", "ev3"}
    await backlog.remove(["ev1", "ev3"])
    assert await backlog.pending() == {"ev2"}
    writes = state.writes
    await backlog.add(["ev2"])  # nothing new: nothing written
    assert state.writes == writes
