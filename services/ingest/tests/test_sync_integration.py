"""Sync through the real OpenTickets sandbox API into Cosmos DB (the devstack stand-in)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import aiohttp
import pytest
from pydantic import SecretStr

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import run_sandbox
from ingest.catalog import CatalogBacklog, EventCatalog, EventStatsQuery
from ingest.checkpoint import CheckpointStore
from ingest.queueing import EnrichmentQueue
from ingest.source import Credentials, OpenTicketsClient, RetryPolicy, SourceRequestError
from ingest.storage import TransactionWriter
from ingest.sync import SyncRunner
from otcommon.bus import InMemoryBus
from otcommon.messages import decode_message
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, provision

pytestmark = pytest.mark.integration

QUEUE = "stripe-enrichment-queue"
FAST_RETRIES = RetryPolicy(max_attempts=12, base_delay_seconds=0.01, max_delay_seconds=0.2)


@pytest.fixture
async def database(cosmos_client):
    name = f"ingest-{uuid.uuid4().hex[:10]}"
    await provision(cosmos_client, database=name, topology=DEFAULT_TOPOLOGY)
    yield name
    await cosmos_client.delete_database(name)


class Harness:
    def __init__(
        self, cosmos_client, database: str, base_url: str, session: aiohttp.ClientSession, **credentials
    ):
        def container(name: str) -> CosmosContainer:
            return CosmosContainer.of(cosmos_client, database=database, spec=DEFAULT_TOPOLOGY.container(name))

        self.transactions = container("transactions")
        self.events = container("events")
        self.bus = InMemoryBus(duplicate_detection_window_seconds=None)
        self.client = OpenTicketsClient(
            session=session,
            base_url=base_url,
            credentials=Credentials(**credentials),
            page_size=100,
            retry=FAST_RETRIES,
            timeout_seconds=5,
        )
        writer = TransactionWriter(self.transactions, concurrency=8)
        self.runner = SyncRunner(
            source=self.client,
            writer=writer,
            queue=EnrichmentQueue(
                publisher=self.bus.publisher(queue=QUEUE), writer=writer, transactions=self.transactions
            ),
            checkpoints=CheckpointStore(container("state")),
            quarantine=container("quarantine"),
            catalog=EventCatalog(
                self.events, EventStatsQuery(self.transactions), CatalogBacklog(container("state"))
            ),
            source_name="opentickets-api",
            overlap=timedelta(minutes=5),
        )

    async def stored(self) -> dict[str, dict]:
        return {row["id"]: row async for row in self.transactions.find({})}

    def published_payment_ids(self) -> list[str]:
        return sorted(decode_message(raw).message.payment_id for raw in self.bus.active_messages(queue=QUEUE))


CLIENT = {"client_id": "sandbox-client", "client_secret": SecretStr("sandbox-secret")}
CONTENT = ("TotalAmount", "IsRefunded", "TotalScanCount", "PaymentID", "PurchaseDate", "enrichmentState")


def content(stored: dict[str, dict]) -> dict[str, tuple]:
    return {doc_id: tuple(doc[field] for field in CONTENT) for doc_id, doc in stored.items()}


async def test_sync_stores_every_transaction_queues_each_payment_and_then_only_changes(
    cosmos_client, database
):
    async with (
        run_sandbox(settings=SandboxSettings(orders=400, events=4)) as sandbox,
        aiohttp.ClientSession() as session,
    ):
        harness = Harness(cosmos_client, database, sandbox.base_url, session, **CLIENT)
        first = await harness.runner.run()
        source_rows = list(sandbox.scenario.transactions())
        stored = await harness.stored()
        assert first.state == "completed"
        assert set(stored) == {row["id"] for row in source_rows}
        payments = sorted(row["PaymentID"] for row in source_rows if row["PaymentID"])
        assert harness.published_payment_ids() == payments
        assert {doc["enrichmentState"] for doc in stored.values() if doc["PaymentID"]} == {"queued"}

        second = await harness.runner.run()
        assert (second.created, second.updated, second.queued) == (0, 0, 0)
        assert harness.published_payment_ids() == payments

        changes = sandbox.advance(minutes=90, refunds=3, scans=5)
        third = await harness.runner.run()
        assert third.created == len(changes.new_ids)
        assert third.updated == len(changes.updated_ids)
        after = await harness.stored()
        for row in sandbox.scenario.transactions():
            assert after[row["id"]]["IsRefunded"] == row["IsRefunded"]
            assert after[row["id"]]["TotalScanCount"] == row["TotalScanCount"]
        catalog = [doc async for doc in harness.events.find({})]
        assert sum(doc["ordersCount"] for doc in catalog) == len(after)
        for entry in catalog:
            # Each entry is the aggregate query's answer over the event's stored orders.
            orders = [doc for doc in after.values() if doc["eventId"] == entry["id"]]
            sales = sorted(doc["PurchaseDate"] for doc in orders)
            assert entry["ticketsCount"] == sum(doc["TotalTickets"] for doc in orders)
            assert entry["grossRevenue"] == pytest.approx(
                sum(doc["TotalAmount"] for doc in orders), abs=0.005
            )
            assert (entry["firstSale"], entry["lastSale"]) == (sales[0], sales[-1])
        assert {doc["city"] for doc in catalog} - {None}


@pytest.mark.parametrize(
    "faults",
    [
        {"next_429": 6, "retry_after_s": 0},
        {"next_5xx": 6},
        {"latency_ms": 30},
        {"next_drop": 4},
        {"next_expired_token": 3},
        {"rate_429": 0.2, "rate_5xx": 0.1, "retry_after_s": 0, "seed": 3},
    ],
    ids=["429-burst", "5xx-burst", "latency", "dropped-connections", "token-expiry", "mixed"],
)
async def test_faults_slow_a_sync_but_it_completes_with_the_same_result(cosmos_client, database, faults):
    settings = SandboxSettings(orders=250, events=3)
    async with run_sandbox(settings=settings) as sandbox, aiohttp.ClientSession() as session:
        sandbox.faults.update(**faults)
        harness = Harness(cosmos_client, database, sandbox.base_url, session, **CLIENT)
        progress = await harness.runner.run()
        assert progress.state == "completed"
        stored = content(await harness.stored())
    async with run_sandbox(settings=settings) as clean, aiohttp.ClientSession() as session:
        baseline_db = f"{database}-baseline"
        await provision(cosmos_client, database=baseline_db, topology=DEFAULT_TOPOLOGY)
        try:
            baseline = Harness(cosmos_client, baseline_db, clean.base_url, session, **CLIENT)
            await baseline.runner.run()
            assert stored == content(await baseline.stored())
        finally:
            await cosmos_client.delete_database(baseline_db)
    if "latency_ms" not in faults:
        assert harness.client.retries + harness.client.token_refreshes > 0


async def test_api_key_authentication_reads_the_same_data(cosmos_client, database):
    async with (
        run_sandbox(settings=SandboxSettings(orders=50, events=2)) as sandbox,
        aiohttp.ClientSession() as session,
    ):
        harness = Harness(
            cosmos_client, database, sandbox.base_url, session, api_key=SecretStr("sandbox-api-key")
        )
        progress = await harness.runner.run()
        assert (progress.state, progress.created) == ("completed", 50)


async def test_wrong_credentials_fail_the_run_with_the_servers_reason(cosmos_client, database):
    async with run_sandbox(settings=SandboxSettings(orders=5)) as sandbox, aiohttp.ClientSession() as session:
        harness = Harness(
            cosmos_client,
            database,
            sandbox.base_url,
            session,
            client_id="sandbox-client",
            client_secret=SecretStr("no"),
        )
        with pytest.raises(SourceRequestError, match=r"401.*unknown client or wrong secret"):
            await harness.runner.run()
