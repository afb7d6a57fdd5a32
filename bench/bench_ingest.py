"""Benchmark ingest: raw Cosmos DB upsert rates, one end-to-end API sync, and a large file import.

    uv run --no-sync python bench/bench_ingest.py --out bench/results/ingest.json

Starts the Cosmos DB stand-in, the Service Bus emulator (with the project's topology) and the
OpenTickets sandbox as processes on 127.0.0.1, measures, and stops them all (also on error).
All of them share this machine's cores with the benchmark itself.

1. Raw Cosmos upserts with ingest's client settings and write concurrency, for documents shaped
   like the transaction documents ingest stores: one ``upsert_item`` per document, and
   transactional batches of 100 upserts per partition (the write method ingest uses).
2. Raw publishing: one ``PaymentEnrichmentRequested`` per payment of those documents, through the
   project's publisher (the SDK's message batches), in chunks of the size ingest publishes.
3. One full sync of the sandbox into Cosmos, every payment published to the enrichment queue,
   through ``open_ingest``; checked (rows stored, messages on the queue) and set against (1) and
   against the serial cost of (1) and (2) together (what storing and publishing alone allow).
4. ``python -m ingest import FILE`` of a generated CSV as a child process: peak RSS, wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from pydantic import SecretStr

from devstack.cosmos import EMULATOR_KEY, connection_for, connection_string, start_cosmos
from devstack.opentickets.testing import run_sandbox_process
from devstack.paths import project_topology
from devstack.scenario import Scenario
from devstack.servicebus.testing import running_emulator
from ingest.app import open_ingest
from ingest.mapping import map_api_row, source_document
from ingest.queueing import PUBLISH_CHUNK, enrichment_request
from ingest.settings import IngestSettings
from otcommon.bus import client_from_connection_string, queue_publisher
from otcommon.messages import Envelope, Message, decode_service_bus_message
from otcommon.settings import CosmosConnection
from otcommon.store import (
    CONTENT_HASH_FIELD,
    DEFAULT_TOPOLOGY,
    MAX_BATCH_OPERATIONS,
    content_hash,
    create_cosmos_client,
    provision,
)
from otcommon.telemetry import configure_logging

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

    from azure.cosmos.aio import ContainerProxy

    from devstack.processes import ManagedProcess

_T = TypeVar("_T")
TARGET_SYNC_RATIO = 0.70  # SPEC section 8: end-to-end >= 70% of the raw upsert rate
TARGET_IMPORT_PEAK_MB = 300.0
ENRICHMENT_QUEUE = "stripe-enrichment-queue"
SEED = 7
ORGANIZERS = 3
SYNC_TIMEOUT_SECONDS = 3600.0
IMPORT_TIMEOUT_SECONDS = 5400.0
EXPORT_TIMEOUT_SECONDS = 1800.0
DRAIN_IDLE_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 900.0
POLL_SECONDS = 0.05
NOTE = (
    "The Cosmos DB stand-in, the Service Bus emulator and the sandbox ran on this machine and shared "
    f"its {os.cpu_count()} cores with the benchmark (and with whatever else the machine was running)."
)


# -- documents ------------------------------------------------------------------------------------


def transaction_documents(*, orders: int, events: int, limit: int) -> list[dict[str, Any]]:
    """Scenario rows as ingest stores them: mapped, source-owned fields, content hash, enrichment state."""
    documents: list[dict[str, Any]] = []
    for row in Scenario(seed=SEED, events=events, orders=orders, organizers=ORGANIZERS).transactions():
        document = source_document(map_api_row(row))
        document[CONTENT_HASH_FIELD] = content_hash(document)
        document["enrichmentState"] = "pending" if document.get("PaymentID") else None
        documents.append(document)
        if len(documents) >= limit:
            break
    return documents


def expected_payments(*, orders: int, events: int) -> tuple[set[str], list[str]]:
    """PaymentIDs of the sandbox's orders (what the enrichment queue should hold), and its event ids."""
    scenario = Scenario(seed=SEED, events=events, orders=orders, organizers=ORGANIZERS)
    payments = {str(row["PaymentID"]) for row in scenario.transactions() if row.get("PaymentID")}
    return payments, scenario.event_ids()


def batches_by_partition(documents: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Documents grouped by ``eventId`` and cut into batches of at most 100, as ingest writes them."""
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        by_event[str(document["eventId"])].append(document)
    return [
        group[start : start + MAX_BATCH_OPERATIONS]
        for group in by_event.values()
        for start in range(0, len(group), MAX_BATCH_OPERATIONS)
    ]


# -- 1. raw Cosmos upserts ------------------------------------------------------------------------


async def _workers(count: int, work: Iterator[_T], action: Callable[[_T], Awaitable[object]]) -> None:
    async def worker() -> None:
        for item in work:  # one shared iterator: each item goes to exactly one worker
            await action(item)

    await asyncio.gather(*(worker() for _ in range(count)))


async def measure_raw(
    cosmos_endpoint: str, *, documents: Sequence[dict[str, Any]], per_item: int, concurrency: int
) -> dict[str, Any]:
    """Upsert rates: one request per document (the first ``per_item``), and batches per partition (all)."""
    results: dict[str, Any] = {"concurrency": concurrency}
    for method in ("upsert_item", "execute_item_batch"):
        measured = documents[:per_item] if method == "upsert_item" else documents
        batches = batches_by_partition(measured)
        elapsed = await _raw_run(
            cosmos_endpoint, method=method, documents=measured, batches=batches, concurrency=concurrency
        )
        results[method] = {
            "documents": len(measured),
            "seconds": round(elapsed, 3),
            "documents_per_second": round(len(measured) / elapsed, 1),
            "requests": len(measured) if method == "upsert_item" else len(batches),
        }
    return results


async def _raw_run(
    cosmos_endpoint: str,
    *,
    method: str,
    documents: Sequence[dict[str, Any]],
    batches: Sequence[Sequence[dict[str, Any]]],
    concurrency: int,
) -> float:
    """Seconds to store every document with one method, into a database of its own (dropped after)."""
    database = f"bench-raw-{uuid.uuid4().hex[:8]}"
    async with create_cosmos_client(_cosmos_connection(cosmos_endpoint, database=database)) as client:
        await provision(client, database=database, topology=DEFAULT_TOPOLOGY)
        container = client.get_database_client(database).get_container_client("transactions")
        await container.upsert_item(dict(documents[0]))  # open a connection before the clock starts

        async def upsert(document: dict[str, Any]) -> None:
            await container.upsert_item(dict(document))

        async def upsert_batch(batch: Sequence[dict[str, Any]]) -> None:
            operations: list[Any] = [("upsert", (dict(document),)) for document in batch]
            await container.execute_item_batch(operations, partition_key=batch[0]["eventId"])

        started = time.perf_counter()
        if method == "upsert_item":
            await _workers(concurrency, iter(documents), upsert)
        else:
            await _workers(concurrency, iter(batches), upsert_batch)
        elapsed = time.perf_counter() - started
        stored = await _count(container, (str(document["eventId"]) for document in documents))
        await client.delete_database(database)
    if stored != len(documents):
        raise RuntimeError(f"raw {method}: {stored} documents stored, expected {len(documents)}")
    return elapsed


async def _count(container: ContainerProxy, event_ids: Iterable[str], *, where: str = "") -> int:
    """Documents in the container, counted one partition at a time (the stand-in is slow across them)."""
    query = f"SELECT VALUE COUNT(1) FROM c {where}"  # noqa: S608 - fixed text from this file
    total = 0
    for event_id in sorted(set(event_ids)):
        rows: list[Any] = [row async for row in container.query_items(query, partition_key=event_id)]
        total += int(sum(rows))
    return total


# -- 2. raw publishing ----------------------------------------------------------------------------


async def measure_publish(servicebus: str, *, documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Messages/s for publishing one enrichment request per payment, as ingest builds and sends them."""
    payments = [document for document in documents if document.get("PaymentID")]
    now = datetime.now(tz=UTC)
    run = uuid.uuid4().hex[:8]

    def request(document: dict[str, Any]) -> Envelope[Message]:
        # Ids of this run's own: the queue's duplicate detection must not drop the sync's messages later.
        envelope = enrichment_request(document, now=now)
        return dataclasses.replace(envelope, message_id=f"{run}-{envelope.message_id}")

    async with client_from_connection_string(connection_string=servicebus) as client:
        publisher = queue_publisher(client=client, queue_name=ENRICHMENT_QUEUE)
        try:
            await publisher.publish([request(payments[0])])  # open the link first
            started = time.perf_counter()
            for start in range(0, len(payments), PUBLISH_CHUNK):
                chunk = payments[start : start + PUBLISH_CHUNK]
                await publisher.publish([request(document) for document in chunk])
            elapsed = time.perf_counter() - started
        finally:
            await publisher.close()
    on_queue = await drain_queue(servicebus)  # the sync that follows starts from an empty queue
    if on_queue != {str(document["PaymentID"]) for document in payments}:
        raise RuntimeError(f"raw publish: {len(on_queue)} payments on the queue, expected {len(payments)}")
    return {
        "messages": len(payments),
        "seconds": round(elapsed, 3),
        "messages_per_second": round(len(payments) / elapsed, 1),
        "chunk": PUBLISH_CHUNK,
    }


# -- 3. end-to-end sync ---------------------------------------------------------------------------


def ingest_settings(*, cosmos_endpoint: str, database: str, servicebus: str, api_url: str) -> IngestSettings:
    """Settings for the started processes; everything else at ingest's defaults."""
    return IngestSettings(
        cosmos_connection_string=SecretStr(connection_string(cosmos_endpoint)),
        cosmos_database=database,
        servicebus_connection_string=SecretStr(servicebus),
        opentickets_base_url=api_url,
        opentickets_api_key=SecretStr("sandbox-api-key"),
        log_level="WARNING",
    )


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _cpu_now(peers: dict[str, int]) -> dict[str, float]:
    return {"ingest": time.process_time(), **{name: _cpu_seconds(pid) for name, pid in peers.items()}}


async def measure_sync(
    *,
    cosmos_endpoint: str,
    servicebus: str,
    peers: dict[str, int],
    orders: int,
    events: int,
    payments: set[str],
    event_ids: Sequence[str],
) -> dict[str, Any]:
    """One full sync from the sandbox through the real components, timed and checked."""
    database = f"bench-sync-{uuid.uuid4().hex[:8]}"
    sandbox_args = ["--orders", str(orders), "--events", str(events), "--seed", str(SEED)]
    async with run_sandbox_process(args=sandbox_args, startup_timeout=300.0) as sandbox:
        settings = ingest_settings(
            cosmos_endpoint=cosmos_endpoint,
            database=database,
            servicebus=servicebus,
            api_url=sandbox.base_url,
        )
        processes = {**peers, "sandbox": sandbox.process.pid}
        async with open_ingest(settings) as ingest:
            cpu_before = _cpu_now(processes)
            started = time.perf_counter()
            async with asyncio.timeout(SYNC_TIMEOUT_SECONDS):
                progress = await ingest.coordinator.run_once()
            elapsed = time.perf_counter() - started
            cpu_after = _cpu_now(processes)
    if progress is None or progress.state != "completed":
        raise RuntimeError(f"the sync did not complete: {progress and progress.to_json()}")
    connection = _cosmos_connection(cosmos_endpoint, database=database)
    async with create_cosmos_client(connection, user_agent="ingest-bench") as client:
        container = client.get_database_client(database).get_container_client("transactions")
        stored = await _count(container, event_ids)
        marked = await _count(container, event_ids, where="WHERE c.enrichmentState = 'queued'")
        await client.delete_database(database)
    on_queue = await drain_queue(servicebus)
    checks = {
        "rows_stored": stored,
        "rows_expected": orders,
        "documents_marked_queued": marked,
        "messages_on_queue": len(on_queue),
        "payments_expected": len(payments),
        "queue_matches_payments": on_queue == payments,
    }
    if stored != orders or on_queue != payments:
        raise RuntimeError(f"the sync stored or queued the wrong things: {checks}")
    cpu = {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after}
    cpu_total = sum(cpu.values())
    cores = os.cpu_count() or 1
    return {
        "orders": orders,
        "events": events,
        "page_size": settings.opentickets_page_size,
        # CPU seconds each process spent during the sync; with every process on this machine's cores,
        # cores / (CPU per row) is the most any arrangement of the same work could reach here.
        "cpu_seconds": cpu,
        "cpu_ms_per_row": round(1000 * cpu_total / orders, 3),
        "cpu_bound_rows_per_second": round(cores * orders / cpu_total, 1) if cpu_total else None,
        "write_concurrency": settings.ingest_write_concurrency,
        "seconds": round(elapsed, 3),
        "rows_per_second": round(orders / elapsed, 1),
        "progress": {
            key: progress.to_json()[key] for key in ("pages", "rows_read", "created", "rejected", "queued")
        },
        "checks": checks,
    }


async def drain_queue(servicebus: str) -> set[str]:
    """Receive and delete every message on the enrichment queue; the payment ids they carry."""
    payment_ids: set[str] = set()
    messages = 0
    async with (
        ServiceBusClient.from_connection_string(servicebus) as client,
        client.get_queue_receiver(
            ENRICHMENT_QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=500
        ) as receiver,
        asyncio.timeout(DRAIN_TIMEOUT_SECONDS),
    ):
        while received := await receiver.receive_messages(
            max_message_count=500, max_wait_time=DRAIN_IDLE_SECONDS
        ):
            for message in received:
                envelope = decode_service_bus_message(message)
                payment_ids.add(str(getattr(envelope.message, "payment_id", "")))
            messages += len(received)
    if messages != len(payment_ids):
        raise RuntimeError(f"{messages} messages carried {len(payment_ids)} distinct payments")
    return payment_ids


# -- 4. file import -------------------------------------------------------------------------------


def export_csv(path: Path, *, orders: int, events: int) -> float:
    """Write the scenario's export file with its own command line; returns the seconds it took."""
    started = time.perf_counter()
    partial = path.with_suffix(".part")  # a run cut short leaves no half file for the next one to reuse
    command = [
        sys.executable, "-m", "devstack", "scenario", "export",
        "--seed", str(SEED), "--orders", str(orders), "--events", str(events),
        "--format", "csv", "--out", str(partial),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=EXPORT_TIMEOUT_SECONDS, stdout=subprocess.DEVNULL)  # noqa: S603
    partial.replace(path)
    return time.perf_counter() - started


def measure_import(path: Path, *, rows: int, cosmos_endpoint: str, servicebus: str) -> dict[str, Any]:
    """``python -m ingest import FILE`` as a child: its peak RSS, wall time and report.

    The peak is the child's own high-water mark (``VmHWM`` in /proc), read every 50 ms while it runs;
    it only rises, so what is missed is the last 50 ms, when the process is shutting down. The
    ``ru_maxrss`` that wait4 reports is no use here: Linux carries the spawning process's resident
    size over into the child's figure, and this benchmark holds the sync phase's documents.
    """
    database = f"bench-import-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "OT_COSMOS_CONNECTION_STRING": connection_string(cosmos_endpoint),
        "OT_COSMOS_DATABASE": database,
        "OT_SERVICEBUS_CONNECTION_STRING": servicebus,
        "OT_LOG_LEVEL": "WARNING",
        "OT_LOG_FORMAT": "json",
    }
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "ingest", "import", str(path), "--json"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        try:
            status, peak_kb = _wait_sampling_peak(child, timeout=IMPORT_TIMEOUT_SECONDS)
        except BaseException:
            if child.returncode is None:
                child.kill()
                child.wait()
            raise
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status != 0:
        raise RuntimeError(f"the import exited with {status}: {stderr[-2000:]}")
    report = json.loads(stdout[stdout.index("{") :])
    if report["rowsRead"] != rows or report["stored"] != rows:
        raise RuntimeError(f"the import read or stored the wrong number of rows: {report}")
    return {
        "rows": rows,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "seconds": round(elapsed, 3),
        "rows_per_second": round(rows / elapsed, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "report": {key: report[key] for key in ("rowsRead", "stored", "created", "rejected", "queued")},
    }


def _wait_sampling_peak(child: subprocess.Popen[bytes], *, timeout: float) -> tuple[int, int]:
    """Wait for the child (killing it past ``timeout``); its exit code and its sampled VmHWM (kB)."""
    deadline = time.monotonic() + timeout
    peak = 0
    while child.poll() is None:
        peak = max(peak, _vm_hwm_kb(child.pid))
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            raise TimeoutError(f"the import did not finish within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    return child.returncode, peak


def _vm_hwm_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# -- running it all -------------------------------------------------------------------------------


def _cosmos_connection(endpoint: str, *, database: str) -> CosmosConnection:
    return CosmosConnection(endpoint=endpoint, key=SecretStr(EMULATOR_KEY), database=database)


async def measure_api(
    args: argparse.Namespace, *, cosmos_endpoint: str, servicebus: str, peers: dict[str, int]
) -> dict[str, Any]:
    """The raw rates and the end-to-end sync, in the same run against the same processes."""
    concurrency = IngestSettings.model_fields["ingest_write_concurrency"].default
    documents = transaction_documents(orders=args.orders, events=args.events, limit=args.orders)
    raw = await measure_raw(
        cosmos_endpoint, documents=documents, per_item=args.raw_item_documents, concurrency=concurrency
    )
    publish = await measure_publish(servicebus, documents=documents)
    del documents
    payments, event_ids = expected_payments(orders=args.orders, events=args.events)
    sync = await measure_sync(
        cosmos_endpoint=cosmos_endpoint,
        servicebus=servicebus,
        peers=peers,
        orders=args.orders,
        events=args.events,
        payments=payments,
        event_ids=event_ids,
    )
    rate = sync["rows_per_second"]
    item_rate = raw["upsert_item"]["documents_per_second"]
    batch_rate = raw["execute_item_batch"]["documents_per_second"]
    sync["ratio_to_raw_upsert_item"] = round(rate / item_rate, 3)
    sync["ratio_to_raw_batch"] = round(rate / batch_rate, 3)
    sync["meets_target_vs_batch"] = rate / batch_rate >= TARGET_SYNC_RATIO
    sync["meets_target_vs_upsert_item"] = rate / item_rate >= TARGET_SYNC_RATIO
    # Storing every row by batch and then publishing every payment, with nothing else, one after the
    # other: the rate those two raw figures allow together.
    share = publish["messages"] / args.orders
    bound = 1 / (1 / batch_rate + share / publish["messages_per_second"])
    sync["raw_batch_plus_publish_rows_per_second"] = round(bound, 1)
    sync["ratio_to_raw_batch_plus_publish"] = round(rate / bound, 3)
    return {"raw_cosmos_upsert": raw, "raw_publish": publish, "sync": sync}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the processes, measure, stop them whatever happens; each phase's figures are saved as it ends."""
    results: dict[str, Any] = {
        "note": NOTE,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    csv_path = work / f"export-{SEED}-{args.events}-{args.import_rows}.csv"
    if args.import_rows and not csv_path.exists():
        results["export_seconds"] = round(
            export_csv(csv_path, orders=args.import_rows, events=args.events), 1
        )
    cosmos: ManagedProcess | None = None
    try:
        cosmos = start_cosmos(timeout_seconds=60.0)
        cosmos_endpoint = connection_for(cosmos, database="unused").endpoint
        with running_emulator(project_topology(), ready_timeout=60.0) as emulator:
            if args.orders:
                results.update(
                    asyncio.run(
                        measure_api(
                            args,
                            cosmos_endpoint=cosmos_endpoint,
                            servicebus=emulator.connection_string,
                            peers={"cosmos": cosmos.pid, "servicebus": emulator.process.pid},
                        )
                    )
                )
                save(args.out, results)
            if args.import_rows:
                results["import"] = measure_import(
                    csv_path,
                    rows=args.import_rows,
                    cosmos_endpoint=cosmos_endpoint,
                    servicebus=emulator.connection_string,
                )
                results["import"]["meets_target"] = results["import"]["peak_rss_mb"] < TARGET_IMPORT_PEAK_MB
                save(args.out, results)
    finally:
        if cosmos is not None:
            cosmos.stop()
    return results


def save(path: Path, results: dict[str, Any]) -> None:
    """Write the figures so far and print them: a long run keeps what it measured if it is cut short."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(summary(results)), flush=True)


def summary(results: dict[str, Any]) -> list[str]:
    """The figures for a person."""
    lines: list[str] = []
    raw = results.get("raw_cosmos_upsert")
    if raw:
        for method in ("upsert_item", "execute_item_batch"):
            row = raw[method]
            lines.append(
                f"raw Cosmos {method:<19} {row['documents_per_second']:>9.1f} docs/s "
                f"({row['documents']} docs in {row['seconds']} s, {row['requests']} requests, "
                f"concurrency {raw['concurrency']})"
            )
    publish = results.get("raw_publish")
    if publish:
        lines.append(
            f"raw publish                    {publish['messages_per_second']:>9.1f} msgs/s "
            f"({publish['messages']} messages in {publish['seconds']} s, chunks of {publish['chunk']})"
        )
    sync = results.get("sync")
    if sync:
        lines.append(
            f"end-to-end sync                {sync['rows_per_second']:>9.1f} rows/s "
            f"({sync['orders']} rows, {sync['checks']['messages_on_queue']} messages, {sync['seconds']} s)"
        )
        if "cpu_seconds" in sync:
            spent = ", ".join(f"{name} {seconds} s" for name, seconds in sync["cpu_seconds"].items())
            lines.append(
                f"  CPU during the sync: {spent}; {sync['cpu_ms_per_row']} ms a row, so "
                f"{results['machine']['cpus']} cores allow at most {sync['cpu_bound_rows_per_second']} rows/s"
            )
        if "ratio_to_raw_batch_plus_publish" in sync:
            lines.append(
                f"  ratio to raw batch + publish {sync['ratio_to_raw_batch_plus_publish']:>6.1%} "
                f"(those two alone allow {sync['raw_batch_plus_publish_rows_per_second']} rows/s)"
            )
        for name, key in (("batch", "ratio_to_raw_batch"), ("upsert_item", "ratio_to_raw_upsert_item")):
            verdict = "met" if sync[key] >= TARGET_SYNC_RATIO else "NOT met"
            lines.append(
                f"  ratio to raw {name:<12} {sync[key]:>6.1%} (target >= {TARGET_SYNC_RATIO:.0%}: {verdict})"
            )
    imported = results.get("import")
    if imported:
        verdict = "met" if imported["meets_target"] else "NOT met"
        lines.append(
            f"import of {imported['rows']} rows       {imported['rows_per_second']:>9.1f} rows/s "
            f"({imported['seconds']} s), peak RSS {imported['peak_rss_mb']} MB "
            f"(target < {TARGET_IMPORT_PEAK_MB:.0f} MB: {verdict})"
        )
    lines.append(results["note"])
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    parser.add_argument("--orders", type=int, default=100_000, help="transactions in the sandbox (0: skip)")
    parser.add_argument("--events", type=int, default=50, help="events the orders spread over")
    parser.add_argument(
        "--raw-item-documents", type=int, default=20_000, help="documents upserted one by one (raw run)"
    )
    parser.add_argument(
        "--import-rows", type=int, default=1_000_000, help="rows of the imported CSV (0: skip)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="keep (and reuse) generated files here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 orders, a 20,000-row import")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.import_rows = min(args.orders, 5_000), min(args.import_rows, 20_000)
    args.raw_item_documents = min(args.raw_item_documents, args.orders)
    # SIGTERM unwinds like Ctrl-C, so the started processes and the import child are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    configure_logging(level="WARNING", fmt="console", service_name="ingest-bench")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        results = run(args, work)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    print("== all phases")
    save(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
