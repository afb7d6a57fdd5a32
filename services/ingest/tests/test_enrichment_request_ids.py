"""Enrichment request ids: retries of one request collapse on the queue, another order's request never does.

The bus here drops a message whose id it has seen within its window, as the project's Service Bus
topology does, so a request dropped by mistake is missing from the queue. The same rule through the
real processes: tests/test_second_order_of_a_payment_system.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from ingest_fakes import QUEUE, T0, FakeSource, api_row, container

from ingest.catalog import CatalogBacklog, EventCatalog, EventStatsQuery
from ingest.checkpoint import CheckpointStore
from ingest.queueing import EnrichmentQueue
from ingest.storage import TransactionWriter
from ingest.sync import SyncRunner
from otcommon.bus import InMemoryBus
from otcommon.messages import decode_message

WINDOW_SECONDS = 24 * 3600.0  # deploy/servicebus/Config.json: DuplicateDetectionHistoryTimeWindow P1D


class Ingest:
    """A sync and its queueing on fakes, publishing to a bus with duplicate detection on."""

    def __init__(self) -> None:
        self.transactions = container("transactions")
        state = container("state")
        self.bus = InMemoryBus(duplicate_detection_window_seconds=WINDOW_SECONDS)
        self.source = FakeSource()
        writer = TransactionWriter(self.transactions, concurrency=4)
        self.queue = EnrichmentQueue(
            publisher=self.bus.publisher(queue=QUEUE), writer=writer, transactions=self.transactions
        )
        catalog = EventCatalog(container("events"), EventStatsQuery(self.transactions), CatalogBacklog(state))
        self.runner = SyncRunner(
            source=self.source,
            writer=writer,
            queue=self.queue,
            checkpoints=CheckpointStore(state),
            quarantine=container("quarantine"),
            catalog=catalog,
            source_name="opentickets-api",
            overlap=timedelta(minutes=5),
        )

    def requests(self) -> list[tuple[str, str]]:
        """(PaymentID, transaction id) of every request on the queue."""
        found = []
        for raw in self.bus.active_messages(queue=QUEUE):
            message = decode_message(raw).message
            found.append((message.payment_id, message.transaction_id))  # type: ignore[attr-defined]
        return found

    async def enrich(self, transaction_id: str) -> None:
        """What the enricher's write does to the state (its other fields do not matter here)."""
        await self.transactions.patch(
            transaction_id,
            partition_key="ev1",
            operations=[{"op": "set", "path": "/enrichmentState", "value": "enriched"}],
        )


@pytest.fixture
def ingest() -> Ingest:
    return Ingest()


async def test_a_second_order_of_an_enriched_payment_synced_later_gets_its_own_request(ingest: Ingest):
    ingest.source.put(api_row(1))
    await ingest.runner.run()
    await ingest.enrich("tx-1")
    ingest.source.put(api_row(2, updated=T0 + timedelta(minutes=10), PaymentID="pi_000001"))
    progress = await ingest.runner.run()
    assert progress.queued == 1
    assert ingest.requests() == [("pi_000001", "tx-1"), ("pi_000001", "tx-2")]


async def test_two_orders_of_one_payment_in_one_sync_are_requested_each(ingest: Ingest):
    ingest.source.put(api_row(1), api_row(2, PaymentID="pi_000001"))
    await ingest.runner.run()
    assert sorted(ingest.requests()) == [("pi_000001", "tx-1"), ("pi_000001", "tx-2")]


async def test_republishing_the_same_pending_order_is_dropped_as_a_duplicate(ingest: Ingest):
    ingest.source.put(api_row(1))
    await ingest.runner.run()
    stored = await ingest.transactions.read("tx-1", partition_key="ev1")
    # What the repair step does after a crash between publishing and marking queued.
    await ingest.queue.enqueue([stored])
    await ingest.queue.enqueue([stored])
    assert ingest.requests() == [("pi_000001", "tx-1")]


async def test_a_payment_id_changed_back_is_requested_again(ingest: Ingest):
    ingest.source.put(api_row(1))
    await ingest.runner.run()
    await ingest.enrich("tx-1")
    ingest.source.put(api_row(1, updated=T0 + timedelta(minutes=10), PaymentID="pi_000002"))
    await ingest.runner.run()
    await ingest.enrich("tx-1")
    ingest.source.put(api_row(1, updated=T0 + timedelta(minutes=20)))  # back to pi_000001
    await ingest.runner.run()
    assert ingest.requests() == [("pi_000001", "tx-1"), ("pi_000002", "tx-1"), ("pi_000001", "tx-1")]
    assert (await ingest.transactions.read("tx-1", partition_key="ev1"))["enrichmentState"] == "queued"
