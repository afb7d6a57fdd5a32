"""Ingest wired on in-memory fakes of the project's own interfaces (store, bus, source)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ingest_fakes import QUEUE, FakeSource, World, container

from ingest.catalog import CatalogBacklog, EventCatalog, EventStatsQuery
from ingest.checkpoint import CheckpointStore
from ingest.importer import FileImporter
from ingest.queueing import EnrichmentQueue
from ingest.storage import TransactionWriter
from ingest.sync import SyncRunner
from otcommon.bus import InMemoryBus


@pytest.fixture
def world() -> World:
    transactions, events, quarantine, state = (
        container("transactions"),
        container("events"),
        container("quarantine"),
        container("state"),
    )
    # Duplicate detection off: a test that expects nothing to be published sees any re-publish.
    bus = InMemoryBus(duplicate_detection_window_seconds=None)
    source = FakeSource()
    writer = TransactionWriter(transactions, concurrency=4)
    queue = EnrichmentQueue(publisher=bus.publisher(queue=QUEUE), writer=writer, transactions=transactions)
    catalog = EventCatalog(events, EventStatsQuery(transactions), CatalogBacklog(state))
    runner = SyncRunner(
        source=source,
        writer=writer,
        queue=queue,
        checkpoints=CheckpointStore(state),
        quarantine=quarantine,
        catalog=catalog,
        source_name="opentickets-api",
        overlap=timedelta(minutes=5),
    )
    importer = FileImporter(writer=writer, queue=queue, quarantine=quarantine, catalog=catalog)
    return World(transactions, events, quarantine, state, bus, source, writer, queue, runner, importer)
