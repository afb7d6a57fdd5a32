"""System tests of ingest through its real entry point (`python -m ingest`) against the devstack:
the Cosmos DB stand-in, the Service Bus emulator and the OpenTickets sandbox, all over the network.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from system_processes import (
    OPENTICKETS_SANDBOX_CLIENT,
    line_containing,
    run,
    service_env,
    spawn,
    wait_for,
)

from devstack.opentickets.testing import run_sandbox_process
from devstack.scenario import Scenario, write_csv, write_xlsx
from devstack.servicebus.testing import free_port
from devstack.testing import fresh_database
from otcommon.messages import decode_service_bus_message
from otcommon.schemas import EXPORT_COLUMNS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

# Each test starts ingest as processes (some several times, some killed and restarted) against the
# stand-ins; the suite-wide 60 s bound is too tight for that on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

QUEUE = "stripe-enrichment-queue"
SEED, EVENTS = 11, 3


@dataclass
class Environment:
    env: dict[str, str]
    database: str
    cosmos_client: Any
    servicebus: str

    async def ingest(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        finished = await run("ingest", *args, env=self.env, timeout=timeout)
        return finished.code, finished.out, finished.err

    async def spawn(self, *args: str, **extra_env: str) -> asyncio.subprocess.Process:
        env = {**self.env, **extra_env}
        return await spawn("ingest", *args, env=env, stderr=asyncio.subprocess.PIPE)

    def container(self, name: str):
        return self.cosmos_client.get_database_client(self.database).get_container_client(name)

    async def stored(self, *, event_id: str | None = None) -> list[dict[str, Any]]:
        options = {"partition_key": event_id} if event_id else {}
        return [row async for row in self.container("transactions").query_items("SELECT * FROM c", **options)]

    async def drain_queue(self) -> list[str]:
        """Every payment id on the enrichment queue (received and deleted)."""
        payment_ids: list[str] = []
        async with ServiceBusClient.from_connection_string(self.servicebus) as client:
            receiver = client.get_queue_receiver(QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
            async with receiver, asyncio.timeout(120):
                while batch := await receiver.receive_messages(max_message_count=200, max_wait_time=2):
                    payment_ids.extend(decode_service_bus_message(m).message.payment_id for m in batch)
        return payment_ids


@pytest.fixture
async def environment(cosmos_client, cosmos_connection, start_servicebus) -> AsyncIterator[Environment]:
    with start_servicebus() as servicebus:
        async with fresh_database(cosmos_client, "system") as database:
            env = service_env(
                cosmos_connection, database, servicebus=servicebus.connection_string,
                **OPENTICKETS_SANDBOX_CLIENT, OT_OPENTICKETS_PAGE_SIZE="25", OT_INGEST_LEASE_SECONDS="5",
            )  # fmt: skip
            yield Environment(env, database, cosmos_client, servicebus.connection_string)


def sandbox_args(orders: int, *extra: str) -> list[str]:
    return ["--seed", str(SEED), "--orders", str(orders), "--events", str(EVENTS), *extra]


def payments_of(rows) -> list[str]:
    return sorted(row["PaymentID"] for row in rows if row["PaymentID"])


async def test_sync_once_stores_every_row_and_queues_each_payment_exactly_once(environment: Environment):
    async with run_sandbox_process(args=sandbox_args(300)) as sandbox:
        environment.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        code, out, err = await environment.ingest("sync", "--once")
        assert code == 0, err
        progress = json.loads(out)
        assert (progress["state"], progress["created"]) == ("completed", 300)
        expected = list(Scenario(seed=SEED, events=EVENTS, orders=300).transactions())
        stored = await environment.stored()
        assert sorted(doc["id"] for doc in stored) == sorted(row["id"] for row in expected)
        assert sorted(await environment.drain_queue()) == payments_of(expected)

        code, out, err = await environment.ingest("sync", "--once")
        assert code == 0, err
        again = json.loads(out)
        assert (again["created"], again["updated"], again["queued"]) == (0, 0, 0)
        assert await environment.drain_queue() == []


async def test_sigkill_at_random_points_then_restart_loses_nothing_and_duplicates_nothing(
    environment: Environment,
):
    rng = random.Random(20261127)
    async with run_sandbox_process(args=sandbox_args(500, "--latency-ms", "20")) as sandbox:
        environment.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        kills = 0
        for _ in range(4):
            before = len(await environment.stored())
            process = await environment.spawn("sync", "--once")

            async def progressed(before: int = before, process: asyncio.subprocess.Process = process) -> bool:
                return process.returncode is not None or len(await environment.stored()) > before

            # Kill mid-sync: once rows are being written, at a random moment after that.
            await wait_for(progressed, timeout=90, interval=0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            await process.wait()
        assert kills >= 3, "most kills should land while a sync runs"
        # The killed holder's lease must expire before the last run may sync (OT_INGEST_LEASE_SECONDS=5).
        code, out, err = await environment.ingest("sync", "--once")
        assert code == 0, err
        assert json.loads(out)["state"] == "completed"
    expected = list(Scenario(seed=SEED, events=EVENTS, orders=500).transactions())
    stored = await environment.stored()
    assert sorted(doc["id"] for doc in stored) == sorted(row["id"] for row in expected)
    assert {doc["enrichmentState"] for doc in stored if doc["PaymentID"]} == {"queued"}
    queued = await environment.drain_queue()
    assert sorted(queued) == payments_of(expected)  # each payment once: the broker removed re-publishes


async def lease_holder(environment: Environment) -> str | None:
    lease_id = "lease:sync:opentickets-api"
    rows = [
        row
        async for row in environment.container("state").query_items(
            "SELECT * FROM c WHERE c.id = @id",
            parameters=[{"name": "@id", "value": lease_id}],
            partition_key=lease_id,
        )
    ]
    return rows[0]["holder"] if rows else None


WAITING_FOR_THE_LEASE = "another replica holds the sync lease; waiting"


async def read_log(process: asyncio.subprocess.Process, lines: list[str], waiting: asyncio.Event) -> None:
    """Keep a replica's log lines; ``waiting`` is set once it says it found the lease held."""
    assert process.stderr is not None
    async for raw in process.stderr:
        line = raw.decode()
        lines.append(line)
        if WAITING_FOR_THE_LEASE in line:
            waiting.set()


async def test_two_replicas_one_syncs_and_the_other_takes_over_when_it_dies(environment: Environment):
    async with run_sandbox_process(args=sandbox_args(400, "--latency-ms", "150")) as sandbox:
        environment.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        schedule = {"OT_INGEST_SCHEDULE": "*/2 * * * * *", "OT_INGEST_HTTP_HOST": "127.0.0.1"}
        first = await environment.spawn("serve", OT_INGEST_HTTP_PORT=str(free_port()), **schedule)
        second = await environment.spawn("serve", OT_INGEST_HTTP_PORT=str(free_port()), **schedule)
        replicas = {first.pid: first, second.pid: second}
        logs: dict[int, list[str]] = {pid: [] for pid in replicas}
        waiting = {pid: asyncio.Event() for pid in replicas}
        readers = [asyncio.create_task(read_log(p, logs[pid], waiting[pid])) for pid, p in replicas.items()]
        try:
            # Both replicas are up and contend: one of them found the lease held by the other. (On a
            # busy machine a replica can start seconds after the other; killing the holder before the
            # late one ever tried would test nothing.)
            waits = [asyncio.create_task(event.wait()) for event in waiting.values()]
            try:
                async with asyncio.timeout(60):
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            other_pid = next(pid for pid, event in waiting.items() if event.is_set())
            holder_pid = int((await lease_holder(environment) or "x:0").split(":")[1])
            assert holder_pid in replicas
            assert holder_pid != other_pid
            replicas[holder_pid].send_signal(signal.SIGKILL)
            await replicas[holder_pid].wait()
            killed_at = asyncio.get_running_loop().time()

            async def taken_over() -> bool:
                holder = await lease_holder(environment)
                return bool(holder) and int(str(holder).split(":")[1]) == other_pid

            async def all_stored() -> bool:
                return len(await environment.stored()) == 400

            await wait_for(taken_over, timeout=60)
            # The dead holder renewed its 5 s lease at most 5/3 s before dying: no takeover before expiry.
            assert asyncio.get_running_loop().time() - killed_at >= 2.5
            await wait_for(all_stored, timeout=90)
        finally:
            for process in replicas.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in replicas.values():
                async with asyncio.timeout(30):
                    await process.wait()
            async with asyncio.timeout(30):
                await asyncio.gather(*readers)
        assert replicas[other_pid].returncode == 0, "".join(logs[other_pid])  # stopped cleanly on SIGTERM
    stored = await environment.stored()
    assert len({doc["id"] for doc in stored}) == 400
    assert sorted(await environment.drain_queue()) == payments_of(stored)


EXPORT_FIELDS = (
    "SN", "EventName", "ticketId", "Name", "Email", "Phone", "TicketTypes", "TotalTickets", "TotalAmount",
    "PurchaseDate", "PurchaseFrom", "IsRefunded", "RefundedRemarks", "IsValid", "IsDisputed", "ReferralCode",
    "ReferralCodeDiscount", "ReferralCodeDiscountType", "PaymentMethod", "PaymentID", "TotalScanCount",
    "TotalTicketRedeemed", "TicketWasLastScannedTime", "TicketRedemptionDateTime", "PlatformFee",
    "PaymentProviderFee", "TaxFee", "OrganizerAmount", "eventId", "enrichmentState", "ticketTypeList",
    "sourceBucket", "customerKey",
)  # fmt: skip


TIMESTAMPS = {"PurchaseDate", "TicketWasLastScannedTime", "TicketRedemptionDateTime"}


def by_ticket(rows: list[dict[str, Any]], *, minutes: bool = False) -> dict[str, tuple]:
    """Each row's contract fields by ticketId; ``minutes`` compares timestamps to the minute only."""

    def value(row: dict[str, Any], field: str) -> Any:
        if minutes and field in TIMESTAMPS and row.get(field):
            return row[field][:16]
        return row.get(field)

    return {row["ticketId"]: tuple(value(row, field) for field in EXPORT_FIELDS) for row in rows}


async def test_csv_and_xlsx_exports_import_to_the_same_records_as_the_api_sync(
    environment: Environment, tmp_path: Path
):
    scenario = Scenario(seed=SEED, events=EVENTS, orders=200)
    event_id = scenario.event_ids()[0]
    rows = list(scenario.transactions(event_id=event_id))
    csv_path, xlsx_path, us_path = tmp_path / "event.csv", tmp_path / "event.xlsx", tmp_path / "event-us.csv"
    write_csv(csv_path, rows)
    write_xlsx(xlsx_path, rows)
    # US-style dates carry minutes only: those records match to the minute.
    write_csv(us_path, rows, date_format="us")
    async with run_sandbox_process(args=sandbox_args(200)) as sandbox:
        environment.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        code, _, err = await environment.ingest("sync", "--once")
        assert code == 0, err
    api_rows = await environment.stored(event_id=event_id)
    for path, minutes in ((csv_path, False), (xlsx_path, False), (us_path, True)):
        async with fresh_database(environment.cosmos_client, "import") as database:
            env = {**environment.env, "OT_COSMOS_DATABASE": database}
            importer = Environment(env, database, environment.cosmos_client, environment.servicebus)
            code, out, err = await importer.ingest("import", str(path), "--event-id", event_id, "--json")
            assert code == 0, err
            report = json.loads(out)
            assert (report["rowsRead"], report["created"], report["rejected"]) == (len(rows), len(rows), 0)
            imported = await importer.stored(event_id=event_id)
            assert by_ticket(imported, minutes=minutes) == by_ticket(api_rows, minutes=minutes), path.name
            code, out, _ = await importer.ingest("import", str(path), "--event-id", event_id, "--json")
            assert (json.loads(out)["created"], json.loads(out)["updated"], json.loads(out)["queued"]) == (
                0,
                0,
                0,
            )


async def test_malformed_files_get_a_clear_report_and_never_a_traceback(
    environment: Environment, tmp_path: Path
):
    header = ",".join(EXPORT_COLUMNS) + "\n"

    def row(**values: str) -> str:
        return ",".join(values.get(column, "") for column in EXPORT_COLUMNS) + "\n"

    show = {"EventName": "Show", "TotalAmount": "10"}

    cases = {
        "missing-columns.csv": (b"EventName,ticketId\nShow,TK-1\n", 1, "missing required column(s)"),
        "empty.csv": (b"", 1, "is empty"),
        "latin1.csv": (
            (header + "1,Caf\xe9,TK-1,1,10,2026-05-01T10:00:00Z,\n").encode("latin-1"),
            1,
            "not UTF-8",
        ),
        "not-really.xlsx": (b"this is text", 1, "not a valid XLSX"),
        "bad-values.csv": (
            (
                header
                + row(
                    ticketId="TK-1", TotalTickets="two", PurchaseDate="31/31/2026", PaymentID="xx_1", **show
                )
                + row(
                    ticketId="TK-2",
                    TotalTickets="1",
                    PurchaseDate="05/01/2026 07:30 PM",
                    PaymentID="pi_2",
                    **show,
                )
            ).encode(),
            0,
            '"rejected": 1',
        ),
    }
    for name, (content, expected_code, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        code, out, err = await environment.ingest("import", str(path), "--json")
        assert code == expected_code, (name, err)
        assert message in (out + err), (name, out, err)
        assert "Traceback" not in err, (name, err)
    records = [row async for row in environment.container("quarantine").query_items("SELECT * FROM c")]
    assert len(records) == 1
    assert sorted(records[0]["reasons"]) == [
        "PaymentID: must be empty or a Stripe id: pi_ or ch_ followed by letters and digits",
        "PurchaseDate: expected an ISO 8601 or MM/DD/YYYY hh:mm AM/PM timestamp",
        "TotalTickets: expected a number",
    ]


async def checkpoint(environment: Environment) -> str | None:
    key = "checkpoint:opentickets-api"
    rows = [
        row
        async for row in environment.container("state").query_items(
            "SELECT * FROM c WHERE c.id = @id", parameters=[{"name": "@id", "value": key}], partition_key=key
        )
    ]
    return rows[0]["updatedUntil"] if rows else None


async def test_sigterm_stops_a_running_sync_at_a_page_boundary_with_a_consistent_checkpoint(
    environment: Environment,
):
    async with run_sandbox_process(args=sandbox_args(400, "--latency-ms", "200")) as sandbox:
        environment.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        port = free_port()
        server = await environment.spawn(
            "serve",
            OT_INGEST_HTTP_HOST="127.0.0.1",
            OT_INGEST_HTTP_PORT=str(port),
            OT_INGEST_API_TOKEN="t0ken",
            OT_INGEST_SCHEDULE="0 0 0 1 1 *",
        )
        try:
            async with aiohttp.ClientSession() as session:

                async def started() -> bool:
                    try:
                        async with session.post(
                            f"http://127.0.0.1:{port}/sync", headers={"Authorization": "Bearer t0ken"}
                        ) as response:
                            return response.status == 202
                    except aiohttp.ClientConnectionError:
                        return False

                await wait_for(started, timeout=60)
            await wait_for(lambda: checkpoint(environment), timeout=60)
            server.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await server.wait() == 0
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
    saved = await checkpoint(environment)
    stored = {doc["id"] for doc in await environment.stored()}
    expected = list(Scenario(seed=SEED, events=EVENTS, orders=400).transactions())
    covered = {row["id"] for row in expected if row["updatedAt"] <= saved}
    assert covered, "the run should have passed at least one page before stopping"
    assert covered <= stored, "every row up to the checkpoint is stored"
    assert len(stored) < len(expected), "the run stopped early instead of finishing"
    assert await lease_holder(environment) is None, "the lease was released"


async def test_requeue_by_state_through_the_cli(environment: Environment):
    async with run_sandbox_process(args=sandbox_args(40)) as sandbox:
        environment.env["OT_OPENTICKETS_BASE_URL"] = sandbox.base_url
        code, _, err = await environment.ingest("sync", "--once")
        assert code == 0, err
    await environment.drain_queue()
    transactions = environment.container("transactions")
    paid = [doc for doc in await environment.stored() if doc["PaymentID"]][:3]
    for doc in paid:
        await transactions.patch_item(
            doc["id"],
            partition_key=doc["eventId"],
            patch_operations=[{"op": "set", "path": "/enrichmentState", "value": "unresolved"}],
        )
    code, out, err = await environment.ingest("requeue", "--state", "unresolved")
    assert (code, out.strip()) == (0, "requeued 3 payment(s) that were unresolved"), err
    assert sorted(await environment.drain_queue()) == sorted(doc["PaymentID"] for doc in paid)


async def hold_lease(environment: Environment, holder: str) -> None:
    """Another replica holds the sync lease, for an hour."""
    lease_id = "lease:sync:opentickets-api"
    await environment.container("state").upsert_item(
        {"id": lease_id, "kind": "lease", "holder": holder, "expiresAt": time.time() + 3600}
    )


@pytest.mark.parametrize("command", [("sync", "--once"), ("backfill", "--since", "2026-01-01")])
async def test_sigterm_while_another_replica_holds_the_lease_says_stopped_and_exits_143(
    environment: Environment, command: tuple[str, ...]
):
    await hold_lease(environment, "other-replica")
    pipe = asyncio.subprocess.PIPE
    process = await spawn("ingest", *command, env=environment.env, stdout=pipe, stderr=pipe)
    try:
        await line_containing(process.stderr, "another replica holds the sync lease; waiting", timeout=60)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 143, err
    assert "stopped by a signal" in err.decode()
    assert "another replica ran the sync" not in out.decode()
    assert json.loads(out)["state"] == "stopped"
    assert await lease_holder(environment) == "other-replica"
    assert await environment.stored() == []


async def test_a_service_bus_outage_during_an_import_is_a_clear_message_and_exit_code_1(
    environment: Environment, tmp_path: Path
):
    rows = list(Scenario(seed=SEED, events=EVENTS, orders=20).transactions())
    path = tmp_path / "export.csv"
    write_csv(path, rows)
    down = environment.servicebus.replace(
        environment.servicebus.split("sb://", 1)[1].split(";", 1)[0], f"127.0.0.1:{free_port()}"
    )
    # One publish attempt (the SDK still retries within it): five would take about a minute.
    env = {**environment.env, "OT_SERVICEBUS_CONNECTION_STRING": down, "OT_INGEST_PUBLISH_ATTEMPTS": "1"}
    outage = Environment(env, environment.database, environment.cosmos_client, down)
    code, _, err = await outage.ingest("import", str(path), "--event-id", "ev-outage")
    assert code == 1, err
    assert "ingest: Service Bus: " in err
    assert "Traceback" not in err
    stored = await environment.stored()
    assert stored, "rows are stored before their payments are queued"
    assert {doc["enrichmentState"] for doc in stored if doc["PaymentID"]} == {"pending"}


async def test_the_import_report_names_each_rejected_row_in_text_and_json(
    environment: Environment, tmp_path: Path
):
    def row(ticket_id: str, payment_id: str) -> str:
        values = {
            "EventName": "Show",
            "ticketId": ticket_id,
            "TotalTickets": "1",
            "TotalAmount": "10",
            "PurchaseDate": "2026-05-01T10:00:00Z",
            "PaymentID": payment_id,
            "Email": "someone@example.com",
        }
        return ",".join(values.get(column, "") for column in EXPORT_COLUMNS) + "\n"

    path = tmp_path / "one-bad.csv"
    path.write_text(",".join(EXPORT_COLUMNS) + "\n" + row("TK-1", "pi_1") + row("TK-2", "xx_2"))
    reason = "PaymentID: must be empty or a Stripe id: pi_ or ch_ followed by letters and digits"
    code, out, err = await environment.ingest("import", str(path))
    assert code == 0, err
    assert f"line 3  ticketId TK-2  {reason}" in out
    code, out, err = await environment.ingest("import", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["rejectedRows"] == [{"line": 3, "ticketId": "TK-2", "reasons": [reason]}]
    assert "someone@example.com" not in out
