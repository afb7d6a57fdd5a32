"""Benchmark the enricher: Stripe calls per enriched payment (bulk and trickle), cold start, naive probing.

    uv run --no-sync python bench/bench_enricher.py --out bench/results/enricher.json

Starts the Cosmos DB stand-in and the Stripe sandbox (``python -m devstack stripe``) as processes on
127.0.0.1. The world: 20 connected accounts plus the platform, every route (platform, destination and
direct charges; ``ch_`` ids with and without a PaymentIntent; manual-payout accounts), and 10,000
payments that the scenario's clock reveals over 100 hourly advances (``--sales-per-hour`` is chosen so
that exactly 10,000 payments arrive; the benchmark checks it). The enricher's real code path runs:
``EnrichmentHandler`` -> ``PaymentEnricher`` + ``Indexer`` with the indexes in Cosmos DB + the
``StripeApiGateway`` on the official ``stripe`` package, writing onto transaction documents in
Cosmos DB and listing each payment's transactions under its ids (``transactions-of:``, for the
webhook service), as ``serve`` wires it. The handler is called directly, ``max_concurrency``
messages at a time, instead of through Service Bus, and announces no ``TransactionChanged`` (no
topic here): the bus's receives, completions and sends are not in its figures. A RetryableError puts
the payment back in the queue, as a redelivery would. Calls are counted by the sandbox (its request
log).

1. Trickle: 100 batches, as hourly syncs would queue them. Before each batch the world's clock moves
   60 minutes (the sandbox's ``/_sandbox/advance``), so each batch's payments were created after the
   previous listings; the batch is the payments created in that hour, requested at the new time.
   The transfers the hour made are first applied as their ``transfer.created`` would reach the
   enricher (``TransferChanges``; a late separate transfer re-routes a payment enriched before),
   and their calls count in the batch.
2. Bulk and cold start: the same 10,000 payments (the world at its last moment), all queued at once
   against empty indexes, under the sandbox's 25 requests/s limit with the gateway's rate gate at
   25/s. Wall time beside its lower bound (calls answered / 25 per s); 429s counted. Its timeline says
   whether the rest is Stripe or the enricher's own work: when the last Stripe call was answered, how
   many payments were done by then, how long the last ones took after it, how long 429s kept
   the rate gate closed; and, for each second, the calls answered, the payments done and this
   process's CPU seconds.
3. Naive: for each payment, retrieve it from the platform, then from each connected account in turn
   until found, against the same sandbox (same run, same world) with its rate limit raised: the
   limit changes the pass's time, not its calls. It probes every ``--naive-every``-th payment (5:
   2,000 of the 10,000, in the order of creation, so every hour, route and account is in the
   sample); its time at 25 requests/s for the whole world is estimated as calls per payment x
   payments / 25. It only locates payments: its true cost is higher (balance transactions,
   transfers and payouts still to be traced).

For trickle and bulk the results also say where the time went: the wall time of the enrichment
passes beside the CPU seconds of this process (the enricher's code, the SDKs, the benchmark's
driver), of the Cosmos DB stand-in and of the Stripe sandbox, and the load average around them.

Every enriched payment is compared field by field with the generator's ground truth
(``/_sandbox/payments``). All processes share this machine's cores with the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import SecretStr

from devstack.cosmos import EMULATOR_KEY, start_cosmos
from devstack.processes import start_process
from devstack.scenario import Scenario
from devstack.stripe.settings import DEFAULT_SECRET_KEY
from enricher.findings import Findings
from enricher.gateway import StripeObjectMissingError
from enricher.handler import EnrichmentHandler
from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.remote_writer import WriteProcess
from enricher.routing import RouteType
from enricher.service import PaymentEnricher
from enricher.settings import EnricherSettings
from enricher.stripe_api import StripeApiGateway
from enricher.throttle import TOO_MANY_REQUESTS, RateGate
from enricher.transfers import TransferChanges
from enricher.write_process import child_environment, writer_on
from enricher.writer import LINGER_SECONDS
from ingest.mapping import map_api_row, source_document
from otcommon.bus import RetryableError
from otcommon.bus.consumer import TASKS_STARTED_PER_TURN
from otcommon.enrichment import STATE_FIELD, EnrichmentState
from otcommon.messages import StripeTransferCreated
from otcommon.runtime import CONSUMER_GC_THRESHOLDS, tune_garbage_collection
from otcommon.settings import CosmosConnection
from otcommon.store import DEFAULT_TOPOLOGY, BatchWrite, CosmosContainer, create_cosmos_client, provision
from otcommon.telemetry import configure_logging

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence

    from azure.cosmos.aio import CosmosClient

    from devstack.processes import ManagedProcess
    from enricher.service import Unresolved
    from enricher.writer import PaymentWriter
    from otcommon.messages import TransactionChange
    from otcommon.store import QueryPage

WRITE_PROCESS_CPU = "the enricher's write process"
SEED = 7
ORGANIZERS = 20
EVENTS = 100  # five per organizer, so every organizer has events on sale during the 100 hours
BATCHES = 100
BATCH_MINUTES = 60
PAYMENTS = 10_000
# With this seed, world and rate, 100 hourly advances reveal exactly PAYMENTS payments (checked below).
SALES_PER_HOUR = 108.8672
RATE_LIMIT = 25  # the sandbox's default, Stripe's test-mode limit
# OT_ENRICHER_MAX_CONCURRENCY for a cold start (the service's default is 16): the whole backlog in
# flight. A payment then finishes as soon as the listings have indexed what it needs, whatever its
# place in the queue (the queue holds the oldest first, Stripe lists the newest first), and payments
# resolved together write in batches per event (services/enricher/DESIGN.md, "A cold start's backlog
# in flight").
MAX_CONCURRENCY = 10_000
NAIVE_RATE_LIMIT = 100_000
NAIVE_GATE_PER_SECOND = 2_000.0
NAIVE_CONCURRENCY = 32
NAIVE_EVERY = 5  # 2,000 of the 10,000 payments, spread over every hour, route and account
WRITE_CONCURRENCY = 16
BATCHED = "documents in batches:"  # counts of documents written in batches, not requests
PHASES = ("trickle", "bulk", "naive")
TARGET_BULK = 0.05
TARGET_TRICKLE = 0.3
TARGET_COLD_START_RATIO = 1.5
NOTE = (
    "The Cosmos DB stand-in and the Stripe sandbox ran on this machine and shared its "
    f"{os.cpu_count()} cores with the benchmark (and with whatever else the machine was running)."
)
DRIVER = (
    "EnrichmentHandler.enrich called directly (at most max_concurrency payments at once) instead of "
    "through Service Bus; no TransactionChanged announcements; a RetryableError re-queues the payment."
)


@dataclass(frozen=True, slots=True)
class Plan:
    """The world's size: hourly batches, the sales rate, and the payments they must reveal."""

    batches: int = BATCHES
    sales_per_hour: float = SALES_PER_HOUR
    payments: int = PAYMENTS
    concurrency: int = MAX_CONCURRENCY
    naive_every: int = 1
    """The naive pass probes every n-th payment (1: all), in the world's order of creation."""
    write_processes: int = 1
    """As ``OT_ENRICHER_WRITE_PROCESSES``: 1 writes the transactions in a child process, as ``serve`` does."""


class WorldClock:
    """The scenario's time, which the enricher's components run on (the world moves only when told)."""

    def __init__(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso)

    def __call__(self) -> datetime:
        return self.now


# -- the sandbox --------------------------------------------------------------------------------------


def start_stripe_sandbox(*, rate_limit: int, plan: Plan) -> ManagedProcess:
    """``python -m devstack stripe`` on a free port, serving the benchmark's world from its first hour."""
    command = [
        sys.executable,
        "-m",
        "devstack",
        "stripe",
        "--port",
        "0",
        *("--seed", str(SEED), "--orders", "0", "--events", str(EVENTS)),
        *("--organizers", str(ORGANIZERS), "--sales-per-hour", str(plan.sales_per_hour)),
        *("--rate-limit", str(rate_limit)),
    ]
    return start_process(
        "stripe",
        command,
        ready_pattern=r"stripe-sandbox ready on (?P<url>http://\S+) key (?P<key>\S+)",
        timeout_seconds=60.0,
    )


class SandboxControls:
    """The sandbox's own routes: clock, request log, rate limit, ground truth."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(method, f"{self._base}{path}", json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def now(self) -> str:
        return str((await self._call("GET", "/_sandbox/state"))["now"])

    async def advance(self, minutes: int) -> tuple[str, list[str]]:
        """Move the clock; (new time, ids of the orders created meanwhile)."""
        answer = await self._call("POST", "/_sandbox/advance", {"minutes": minutes})
        return str(answer["now"]), list(answer["newIds"])

    async def requests(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/_sandbox/requests"))

    async def clear_requests(self) -> None:
        await self._call("DELETE", "/_sandbox/requests")

    async def set_rate_limit(self, per_second: int) -> None:
        await self._call("POST", "/_sandbox/rate-limit", {"per_second": per_second})

    async def payments_now(self, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Ground truth of these payments at the world's current moment (one small request each)."""
        limit = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def one(payment_id: str) -> dict[str, Any]:
            async with limit:
                return dict(await self._call("GET", f"/_sandbox/payments/{payment_id}"))

        return dict(zip(payment_ids, await asyncio.gather(*map(one, payment_ids)), strict=True))

    async def payments(self) -> dict[str, dict[str, Any]]:
        """Ground truth of every payment at the world's current moment."""
        data = (await self._call("GET", "/_sandbox/payments"))["data"]
        return {str(facts["payment_id"]): facts for facts in data}


# -- where the time goes --------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by the benchmark's own process and by the stand-ins, between two moments.

    The stand-ins' figures come from ``/proc/<pid>/stat`` (Linux); elsewhere they are left out.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._pids_with_memory: dict[str, int] = {}  # a part of the enricher (the stand-ins' is not its own)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @contextlib.contextmanager
    def watching(self, name: str, pid: int | None) -> Iterator[None]:
        """Count ``pid``'s CPU seconds and its memory too, under ``name``, while inside."""
        if pid is not None:
            self._pids[name] = self._pids_with_memory[name] = pid
        try:
            yield
        finally:
            self._pids.pop(name, None)
            self._pids_with_memory.pop(name, None)

    def _process_seconds(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except OSError:
            return None
        # utime and stime are the 14th and 15th fields; the text after ")" starts at the 3rd.
        return (int(fields[11]) + int(fields[12])) / self._tick

    def snapshot(self) -> dict[str, float | None]:
        taken: dict[str, float | None] = {"enricher and benchmark (this process)": time.process_time()}
        taken.update({name: self._process_seconds(pid) for name, pid in self._pids.items()})
        return taken

    @contextlib.contextmanager
    def measure(self, into: dict[str, Any]) -> Iterator[None]:
        """Fill ``into`` with the wall time, each process's CPU seconds and the load average around it.

        And the garbage collector's runs in this process meanwhile (``CollectorWatch``).

        And this process's memory: its peak resident set while measured (Linux: the peak is reset
        at the start) and at the end. It holds the enricher and the benchmark's driver (the world,
        the ground truth): an upper bound of the enricher's own.
        """
        _reset_peak_memory()
        for pid in self._pids_with_memory.values():
            _reset_peak_memory(str(pid))
        collector = CollectorWatch()
        before, load_before, started = self.snapshot(), os.getloadavg(), time.perf_counter()
        try:
            with collector.watching():
                yield
        finally:
            collector.add_to(into)
            memory = _memory_mb()
            if memory:
                peak = max(memory.get("VmHWM", 0.0), into.get("memory_mb", {}).get("peak", 0.0))
                into["memory_mb"] = {"peak": peak, "at_the_end": memory.get("VmRSS")}
            for name, pid in self._pids_with_memory.items():
                if memory := _memory_mb(str(pid)):
                    key = f"memory_mb of {name}"
                    peak = max(memory.get("VmHWM", 0.0), into.get(key, {}).get("peak", 0.0))
                    into[key] = {"peak": peak, "at_the_end": memory.get("VmRSS")}
            # Measured again (trickle's batches), the figures add up; the first load average is kept.
            wall = into.get("wall_seconds", 0.0) + time.perf_counter() - started
            after, cpu = self.snapshot(), dict(into.get("cpu_seconds", {}))
            for name, start in before.items():
                if start is not None and (used := after[name]) is not None:
                    cpu[name] = round(cpu.get(name, 0.0) + used - start, 2)
            into["wall_seconds"] = round(wall, 2)
            into["cpu_seconds"] = cpu
            into["cpu_share_of_wall"] = {name: round(used / wall, 3) for name, used in cpu.items() if wall}
            into.setdefault("load_average_before", [round(x, 2) for x in load_before])
            into["load_average_after"] = [round(x, 2) for x in os.getloadavg()]


class CollectorWatch:
    """The cyclic garbage collector's runs in this process while watched: how many per generation,
    their CPU seconds and the longest pause (each collection holds the interpreter's lock)."""

    def __init__(self) -> None:
        self.collections: Counter[int] = Counter()
        self.cpu_seconds = 0.0
        self.longest_pause_seconds = 0.0
        self._started: tuple[float, float] | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = (time.process_time(), time.perf_counter())
        elif self._started is not None:
            cpu, wall = self._started
            self.collections[int(info["generation"])] += 1
            self.cpu_seconds += time.process_time() - cpu
            self.longest_pause_seconds = max(self.longest_pause_seconds, time.perf_counter() - wall)
            self._started = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        gc.callbacks.append(self._callback)
        try:
            yield
        finally:
            gc.callbacks.remove(self._callback)

    def add_to(self, into: dict[str, Any]) -> None:
        """Add these runs to ``into["garbage_collection"]`` (measured again, the figures add up)."""
        held = into.get("garbage_collection", {})
        by_generation = Counter({int(k): v for k, v in held.get("collections_by_generation", {}).items()})
        by_generation.update(self.collections)
        into["garbage_collection"] = {
            "thresholds": list(gc.get_threshold()),
            "collections_by_generation": {str(k): v for k, v in sorted(by_generation.items())},
            "cpu_seconds": round(held.get("cpu_seconds", 0.0) + self.cpu_seconds, 3),
            "longest_pause_seconds": round(
                max(held.get("longest_pause_seconds", 0.0), self.longest_pause_seconds), 3
            ),
        }


def _reset_peak_memory(process: str = "self") -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{process}/clear_refs").write_text("5", encoding="ascii")  # Linux: resets VmHWM


def _memory_mb(process: str = "self") -> dict[str, float]:
    """VmHWM (peak resident set) and VmRSS of a process (this one), in MB (Linux; empty elsewhere)."""
    try:
        lines = Path(f"/proc/{process}/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in {"VmHWM", "VmRSS"}:
            found[name] = round(int(value.split()[0]) / 1024, 1)  # given in kB
    return found


# -- Cosmos DB and the enricher -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def cosmos_database(endpoint: str, name: str) -> AsyncIterator[CosmosClient]:
    """A provisioned database of its own, deleted at exit."""
    connection = CosmosConnection(endpoint=endpoint, key=SecretStr(EMULATOR_KEY), database=name)
    async with create_cosmos_client(connection, user_agent="enricher-bench") as client:
        await provision(client, database=name, topology=DEFAULT_TOPOLOGY)
        try:
            yield client
        finally:
            await client.delete_database(name)


class CountedContainer(CosmosContainer):
    """A container that counts the requests made through it, by operation and index key kind."""

    def __init__(self, inner: CosmosContainer, counts: Counter[str]) -> None:
        super().__init__(inner._container, partition_key_path=inner.partition_key_path)  # noqa: SLF001
        self._counts = counts

    def _kind(self, key: object) -> str:
        return str(key).split(":", 1)[0] if self.name.startswith("stripe-") else "transaction"

    def _count(self, operation: str, key: object) -> None:
        self._counts[f"{self.name} {operation} {self._kind(key)}"] += 1

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[dict[str, Any]]:
        kinds = Counter(self._kind(write.document["id"]) for write in writes)
        self._count("batch", "+".join(sorted(kinds)))
        for kind, documents in kinds.items():
            self._counts[f"{BATCHED} {self.name} {kind}"] += documents
        return await super().write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        self._count("read", document_id)
        return await super().read(document_id, partition_key=partition_key)

    async def read_many(self, ids: Sequence[str], *, partition_key: Any) -> dict[str, dict[str, Any]]:
        self._count("read_many", "+".join(sorted({self._kind(document_id) for document_id in ids})))
        return await super().read_many(ids, partition_key=partition_key)

    async def upsert(self, document: Mapping[str, Any]) -> dict[str, Any]:
        self._count("upsert", document["id"])
        return await super().upsert(document)

    async def create(self, document: Mapping[str, Any]) -> dict[str, Any]:
        self._count("create", document["id"])
        return await super().create(document)

    async def replace(self, document: Mapping[str, Any], *, etag: str | None = None) -> dict[str, Any]:
        self._count("replace", document["id"])
        return await super().replace(document, etag=etag)

    async def query(self, query: str, **options: Any) -> AsyncIterator[QueryPage]:  # type: ignore[override]
        self._count("query", "pages")
        async for page in super().query(query, **options):
            yield page


def container(
    client: CosmosClient, database: str, name: str, counts: Counter[str] | None = None
) -> CosmosContainer:
    plain = CosmosContainer.of(client, database=database, spec=DEFAULT_TOPOLOGY.container(name))
    return plain if counts is None else CountedContainer(plain, counts)


WRITE_PROCESS_SCRIPT = Path(__file__).with_name("enricher_write_process.py")


@contextlib.asynccontextmanager
async def bench_write_process(
    *, endpoint: str, database: str, counts: Counter[str], meter: CpuMeter, write_processes: int
) -> AsyncIterator[WriteProcess | None]:
    """The enricher's write process on this database, as ``serve`` starts it (None: ``--write-processes
    0``); its CPU is measured beside this process's, its Cosmos DB requests added to ``counts`` at the end."""
    if not write_processes:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        counted = Path(folder) / "counts.json"
        settings = EnricherSettings(
            cosmos_endpoint=endpoint,
            cosmos_key=SecretStr(EMULATOR_KEY),
            cosmos_database=database,
            servicebus_namespace="unused.servicebus.windows.net",  # the write process opens none
            log_level="WARNING",
        )
        env = child_environment(settings, inherited=os.environ)
        process = WriteProcess(command=(sys.executable, str(WRITE_PROCESS_SCRIPT), str(counted)), env=env)
        await process.start()
        try:
            with meter.watching(WRITE_PROCESS_CPU, process.pid):
                yield process
        finally:
            await process.close()
        counts.update(json.loads(counted.read_text(encoding="utf-8")))


@contextlib.asynccontextmanager
async def enricher_database(
    endpoint: str, database: str, *, counts: Counter[str], meter: CpuMeter, plan: Plan
) -> AsyncIterator[tuple[CosmosClient, WriteProcess | None]]:
    """A pass's own database, and the write process on it (None without one)."""
    async with (
        cosmos_database(endpoint, database) as client,
        bench_write_process(
            endpoint=endpoint,
            database=database,
            counts=counts,
            meter=meter,
            write_processes=plan.write_processes,
        ) as writer,
    ):
        yield client, writer


def build_handler(
    *,
    client: CosmosClient,
    database: str,
    gateway: StripeApiGateway,
    clock: WorldClock,
    counts: Counter[str],
    writer: PaymentWriter | None = None,
) -> EnrichmentHandler:
    """The enricher as ``open_enricher`` wires it, on this database, this gateway and the world's clock."""
    return build_enricher(
        client=client, database=database, gateway=gateway, clock=clock, counts=counts, writer=writer
    )[0]


def build_enricher(
    *,
    client: CosmosClient,
    database: str,
    gateway: StripeApiGateway,
    clock: WorldClock,
    counts: Counter[str],
    results: dict[str, Findings | Unresolved] | None = None,
    writer: PaymentWriter | None = None,
) -> tuple[EnrichmentHandler, TransferChanges, RecordingEnricher]:
    """The handler, and the transfer path (as webhooks reach it) recording what it enriches again.

    ``writer``: the write process (``bench_write_process``); None writes in this process.
    """
    index = StripeIndex(
        container(client, database, "stripe-index", counts),
        facts=container(client, database, "stripe-facts", counts),
    )
    indexer = Indexer(gateway=gateway, index=index, clock=clock)
    handler = EnrichmentHandler(
        enricher=PaymentEnricher(gateway=gateway, index=index, indexer=indexer, clock=clock),
        writer=writer
        or writer_on(lambda name: container(client, database, name, counts), linger_seconds=LINGER_SECONDS),
        announcer=None,
        clock=clock,
    )
    recording = RecordingEnricher(handler, {} if results is None else results)
    return handler, TransferChanges(index=index, indexer=indexer, payments=recording), recording


class RecordingEnricher:
    """The handler as the transfer path calls it, keeping each payment's latest answer."""

    def __init__(self, handler: EnrichmentHandler, results: dict[str, Findings | Unresolved]) -> None:
        self._handler = handler
        self._results = results
        self.enriched: list[str] = []

    async def enrich(
        self, payment_id: str, *, requested_at: datetime, reannounce: bool = False, change: TransactionChange
    ) -> Findings | Unresolved:
        result = await self._handler.enrich(
            payment_id, requested_at=requested_at, reannounce=reannounce, change=change
        )
        self._results[payment_id] = result
        self.enriched.append(payment_id)
        return result


def transfers_made(before: Mapping[str, dict[str, Any]], after: Mapping[str, dict[str, Any]]) -> list[Any]:
    """``StripeTransferCreated`` for each transfer the world made meanwhile, as webhooks hand them over."""
    return [
        StripeTransferCreated(
            transfer_id=transfer_id,
            destination_account_id=after[transfer_id]["destination"],
            destination_payment_id=after[transfer_id]["destination_payment"],
            source_charge_id=after[transfer_id]["source_transaction"],
            transfer_created=datetime.fromtimestamp(after[transfer_id]["created"], UTC),
            stripe_event_id=f"evt_bench_{transfer_id}",
        )
        for transfer_id in sorted(after.keys() - before.keys())
    ]


def sandbox_gateway(
    base_url: str,
    *,
    per_second: float,
    gate: RateGate | None = None,
    on_response: Callable[[str, str, int], None] | None = None,
) -> StripeApiGateway:
    return StripeApiGateway(
        api_key=DEFAULT_SECRET_KEY,
        api_base=base_url,
        requests_per_second=per_second,
        max_network_retries=3,
        gate=gate,
        on_response=on_response,
    )


class Timeline:
    """When each Stripe call was answered and each payment done, in seconds from ``start``."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.answered: list[float] = []
        self.answered_by_endpoint: dict[str, list[float]] = {}
        self.refused: list[float] = []
        self.done: list[float] = []
        self.done_by_kind: dict[str, list[float]] = {}
        self.last_answered: dict[str, float] = {}
        self.cpu_per_second: list[float] = []

    def start(self) -> None:
        self.started = time.perf_counter()

    async def sample_cpu(self) -> None:
        """This process's CPU seconds in each second of the pass, until cancelled."""
        used = time.process_time()
        for second in itertools.count(1):
            await asyncio.sleep(self.started + second - time.perf_counter())
            used, before = time.process_time(), used
            self.cpu_per_second.append(round(used - before, 2))

    def on_response(self, method: str, url: str, status: int) -> None:
        at = time.perf_counter() - self.started
        if status == TOO_MANY_REQUESTS:
            self.refused.append(at)
            return
        self.answered.append(at)
        endpoint = f"{method.upper()} {endpoint_of(url)}"
        self.answered_by_endpoint.setdefault(endpoint, []).append(at)
        self.last_answered[endpoint] = round(at, 2)

    def payment_done(self, kind: str) -> None:
        at = time.perf_counter() - self.started
        self.done.append(at)
        self.done_by_kind.setdefault(kind, []).append(at)

    def summary(self, gate: RateGate) -> dict[str, Any]:
        last_call = max(self.answered, default=0.0)
        done = sorted(self.done)
        last_done = done[-1] if done else 0.0

        def done_at(share: float) -> float | None:
            return round(done[max(0, math.ceil(share * len(done)) - 1)], 2) if done else None

        return {
            "measured": "seconds from the start of the pass, on the benchmark's clock",
            "last_stripe_call_answered_seconds": round(last_call, 2),
            "payments_done_by_then": sum(at <= last_call for at in done),
            "payments": len(done),
            "last_payment_done_seconds": round(last_done, 2),
            "last_call_to_last_payment_seconds": round(last_done - last_call, 2),
            "first_payment_done_seconds": done_at(0.0),
            "half_the_payments_done_seconds": done_at(0.5),
            "nine_tenths_done_seconds": done_at(0.9),
            "last_429_seconds": round(max(self.refused), 2) if self.refused else None,
            "calls_answered_in_each_second": _per_second(self.answered),
            "last_answered_by_endpoint": dict(sorted(self.last_answered.items(), key=lambda item: item[1])),
            "calls_answered_in_each_second_by_endpoint": {
                endpoint: _per_second(moments)
                for endpoint, moments in sorted(self.answered_by_endpoint.items(), key=_last_moment)
            },
            "payments_done_in_each_second": _per_second(self.done),
            "payments_done_in_each_second_by_route_and_deposit_status": {
                kind: _per_second(moments) for kind, moments in sorted(self.done_by_kind.items())
            },
            "cpu_seconds_of_this_process_in_each_second": self.cpu_per_second,
            "gate_pauses_after_429": gate.pauses,
            "gate_closed_after_429_seconds": round(gate.closed_seconds, 2),
        }


async def store_transactions(transactions: CosmosContainer, documents: Sequence[dict[str, Any]]) -> None:
    """The transaction documents as ingest leaves them after queueing their payments."""
    work = iter(documents)

    async def writer() -> None:
        for document in work:
            await transactions.upsert(document)

    await asyncio.gather(*(writer() for _ in range(WRITE_CONCURRENCY)))


def transaction_documents(scenario: Scenario, order_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Rows of these orders mapped as ingest maps them; payments marked queued."""
    wanted = set(order_ids)
    documents = []
    for order in scenario.orders():
        if order.id not in wanted:
            continue
        document = source_document(map_api_row(scenario.row(order)))
        document[STATE_FIELD] = EnrichmentState.QUEUED.value if document.get("PaymentID") else None
        documents.append(document)
    return documents


STRIPE_ID = re.compile(r"^(acct|ba|ch|evt|fee|pi|po|py|tr|txn)_\w+$")


def endpoint_of(url: str) -> str:
    """A request's path with its object ids as ``{id}`` (``/v1/payouts/{id}``), its query left out."""
    path = urllib.parse.urlsplit(url).path
    return "/".join("{id}" if STRIPE_ID.match(part) else part for part in path.split("/"))


def _last_moment(item: tuple[str, list[float]]) -> float:
    return max(item[1])


def _per_second(moments: Sequence[float]) -> list[int]:
    """How many of ``moments`` fall in each whole second from 0."""
    counts = [0] * (math.floor(max(moments, default=-1.0)) + 1)
    for at in moments:
        counts[math.floor(at)] += 1
    return counts


async def enrich_all(
    handler: EnrichmentHandler,
    payment_ids: Sequence[str],
    *,
    requested_at: datetime,
    concurrency: int,
    timeline: Timeline | None = None,
) -> tuple[dict[str, Findings | Unresolved], int]:
    """Each payment through the handler, ``concurrency`` at once; (results, times re-queued)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for payment_id in payment_ids:
        queue.put_nowait(payment_id)
    results: dict[str, Findings | Unresolved] = {}
    requeued = 0

    async def worker() -> None:
        nonlocal requeued
        while not queue.empty():
            payment_id = queue.get_nowait()
            try:
                results[payment_id] = await handler.enrich(payment_id, requested_at=requested_at)
            except RetryableError:
                requeued += 1
                queue.put_nowait(payment_id)
            else:
                if timeline is not None:
                    found = results[payment_id]
                    timeline.payment_done(
                        f"{found.route.route_type.value} {found.deposit_status.value}"
                        if isinstance(found, Findings)
                        else "unresolved"
                    )

    workers: list[asyncio.Future[None]] = []
    for number in range(1, concurrency + 1):
        workers.append(asyncio.ensure_future(worker()))
        if number % TASKS_STARTED_PER_TURN == 0:
            await asyncio.sleep(0)  # in turns, as the service's consumer starts a receive's handlers
    await asyncio.gather(*workers)
    return results, requeued


# -- correctness -------------------------------------------------------------------------------------


def wrong_fields(found: Findings | Unresolved, truth: dict[str, Any]) -> list[str]:
    """The fields where the enricher's answer differs from the generator's ground truth."""
    if not isinstance(found, Findings):
        return ["unresolved"]
    route = truth["route"]
    expected = {
        "route": RouteType.PLATFORM if route == "platform" else RouteType.CONNECTED,
        "direct": route == "direct",
        "destination": None
        if route == "platform"
        else (truth["destination_account_id"] or truth["account_id"]),
        "charge": truth["charge_id"],
        "payment_intent": truth["payment_intent_id"],
        "transfer": truth["transfer_id"],
        "application_fee": truth["application_fee_amount"],
        "net": truth["net_amount"],
        "available_on": truth["available_on"],
        "payout": truth["payout_id"],
        "payout_status": truth["payout_status"],
        "arrival_date": truth["payout_arrival_date"],
        "deposit_status": truth["deposit_status"],
    }
    actual = {
        "route": found.route.route_type,
        "direct": found.route.direct,
        "destination": found.route.destination_account_id,
        "charge": found.charge_id,
        "payment_intent": found.payment_intent_id,
        "transfer": found.transfer_id,
        "application_fee": found.application_fee_amount,
        "net": found.net_amount,
        "available_on": found.payout.available_on,
        "payout": found.payout.payout_id,
        "payout_status": found.payout.payout_status,
        "arrival_date": found.payout.arrival_date,
        "deposit_status": found.deposit_status.value,
    }
    return [name for name, value in expected.items() if actual[name] != value]


def correctness(
    results: dict[str, Findings | Unresolved], truths: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    wrong: Counter[str] = Counter()
    payments_wrong = 0
    for payment_id, truth in truths.items():
        fields = wrong_fields(results[payment_id], truth) if payment_id in results else ["not enriched"]
        wrong.update(fields)
        payments_wrong += bool(fields)
    deposits = Counter(str(truth["deposit_status"]) for truth in truths.values())
    return {
        "payments_compared": len(truths),
        "payments_with_mismatches": payments_wrong,
        "mismatches_by_field": dict(sorted(wrong.items())),
        "deposit_statuses": dict(sorted(deposits.items())),
    }


def stored_states(results: dict[str, Findings | Unresolved]) -> dict[str, int]:
    return dict(Counter("found" if isinstance(r, Findings) else "unresolved" for r in results.values()))


async def stored_enrichment_states(transactions: CosmosContainer) -> dict[str, int]:
    """How the transaction documents with a PaymentID stand in Cosmos DB after a pass."""
    states: Counter[str] = Counter()
    query = "SELECT c.enrichmentState FROM c WHERE IS_DEFINED(c.PaymentID) AND c.PaymentID != null"
    async for page in transactions.query(query, page_size=1000):
        states.update(str(row.get(STATE_FIELD)) for row in page.items)
    return dict(sorted(states.items()))


def call_counts(log: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's request log, trimmed to what the results show."""
    return {
        "total": log["total"],
        "by_endpoint": log["by_endpoint"],
        "by_status": log["by_status"],
    }


def cosmos_summary(counts: Counter[str], payments: int) -> dict[str, Any]:
    """Requests the enricher made to Cosmos DB (a query or a batch counts once), and documents batched."""
    requests = {name: count for name, count in counts.items() if not name.startswith(BATCHED)}
    batched = {name[len(BATCHED) + 1 :]: count for name, count in counts.items() if name.startswith(BATCHED)}
    total = sum(requests.values())
    return {
        "total": total,
        "per_payment": round(total / payments, 2),
        "by_operation": dict(sorted(requests.items())),
        "documents_written_in_batches": dict(sorted(batched.items())),
    }


def answered(log: dict[str, Any]) -> int:
    """Calls the sandbox let through (a 429 is refused before it counts against the limit)."""
    return int(log["total"]) - int(log["by_status"].get("429", 0))


# -- 1. trickle ------------------------------------------------------------------------------------------


async def run_trickle(
    *,
    cosmos_endpoint: str,
    stripe_url: str,
    controls: SandboxControls,
    scenario: Scenario,
    plan: Plan,
    meter: CpuMeter,
) -> dict[str, Any]:
    """100 hourly batches: the world moves an hour, that hour's payments are queued and enriched."""
    batches = plan.batches
    where_the_time_went: dict[str, Any] = {}
    database = f"bench-enricher-trickle-{uuid.uuid4().hex[:8]}"
    cosmos_requests: Counter[str] = Counter()
    async with enricher_database(
        cosmos_endpoint, database, counts=cosmos_requests, meter=meter, plan=plan
    ) as (client, writer):
        clock = WorldClock(await controls.now())
        gateway = sandbox_gateway(stripe_url, per_second=RATE_LIMIT)
        results: dict[str, Findings | Unresolved] = {}
        handler, transfer_changes, recording = build_enricher(
            client=client,
            database=database,
            gateway=gateway,
            clock=clock,
            counts=cosmos_requests,
            results=results,
            writer=writer,
        )
        transactions = container(client, database, "transactions")
        await controls.clear_requests()
        truths: dict[str, dict[str, Any]] = {}
        batch_calls: list[int] = []
        batch_sizes: list[int] = []
        requeued = 0
        transfers_applied = 0
        transfers = dict(scenario.stripe.transfers)
        try:
            for batch in range(batches):
                if batch % 10 == 0:
                    print(f"trickle: batch {batch + 1} of {batches}", file=sys.stderr, flush=True)
                now, new_ids = await controls.advance(BATCH_MINUTES)
                if list(scenario.advance(minutes=BATCH_MINUTES).new_ids) != new_ids:
                    raise RuntimeError("the sandbox's world and the benchmark's copy of it diverged")
                made = transfers_made(transfers, scenario.stripe.transfers)
                transfers = dict(scenario.stripe.transfers)
                documents = transaction_documents(scenario, new_ids)
                await store_transactions(transactions, documents)
                payment_ids = [str(d["PaymentID"]) for d in documents if d.get("PaymentID")]
                clock.now = datetime.fromisoformat(now)
                before = (await controls.requests())["total"]
                with meter.measure(where_the_time_went):
                    # The hour's transfer.created events, as the webhook service hands them over.
                    recording.enriched.clear()
                    for message in made:
                        await transfer_changes.apply(message)
                    found, again = await enrich_all(
                        handler, payment_ids, requested_at=clock.now, concurrency=plan.concurrency
                    )
                batch_calls.append((await controls.requests())["total"] - before)
                batch_sizes.append(len(payment_ids))
                transfers_applied += len(made)
                results.update(found)
                requeued += again
                # Each batch is checked against the truth of its own moment (its payouts were still ahead);
                # a payment a late transfer re-routed, against the truth of the moment it was re-routed.
                rerouted = [p for p in recording.enriched if p in truths]
                truths.update(await controls.payments_now([*payment_ids, *rerouted]))
            log = await controls.requests()
            stored = await stored_enrichment_states(transactions)
        finally:
            await gateway.close()
    payments = len(results)
    return {
        "batches": batches,
        "minutes_between_batches": BATCH_MINUTES,
        "payments": payments,
        "payments_per_batch": {"min": min(batch_sizes), "median": statistics.median(batch_sizes)},
        "calls": call_counts(log),
        "calls_per_batch": {
            "min": min(batch_calls),
            "median": statistics.median(batch_calls),
            "max": max(batch_calls),
            "first": batch_calls[0],
        },
        "calls_per_payment": round(log["total"] / payments, 4),
        "target": TARGET_TRICKLE,
        "meets_target": log["total"] / payments <= TARGET_TRICKLE,
        "requeued_by_retryable_errors": requeued,
        "transfer_created_events_applied": transfers_applied,
        "concurrency": plan.concurrency,
        "cosmos_requests": cosmos_summary(cosmos_requests, payments),
        "where_the_time_went": {
            "measured": "the 100 enrichment passes only (not the world's advances or the ground truth)",
            **where_the_time_went,
        },
        "results": stored_states(results),
        "stored_enrichment_states": stored,
        "correctness": correctness(results, truths),
    }


# -- 2. bulk and cold start ------------------------------------------------------------------------------


async def run_bulk(
    *,
    cosmos_endpoint: str,
    stripe_url: str,
    controls: SandboxControls,
    scenario: Scenario,
    plan: Plan,
    meter: CpuMeter,
) -> dict[str, Any]:
    """Every payment queued at once against empty indexes, under the sandbox's 25 requests/s."""
    truths = await controls.payments()
    if plan.payments and len(truths) != plan.payments:
        raise RuntimeError(f"the world has {len(truths)} payments, not {plan.payments}")
    where_the_time_went: dict[str, Any] = {}
    database = f"bench-enricher-bulk-{uuid.uuid4().hex[:8]}"
    cosmos_requests: Counter[str] = Counter()
    async with enricher_database(
        cosmos_endpoint, database, counts=cosmos_requests, meter=meter, plan=plan
    ) as (client, writer):
        transactions = container(client, database, "transactions")
        await store_transactions(
            transactions, transaction_documents(scenario, (o.id for o in scenario.orders()))
        )
        clock = WorldClock(await controls.now())
        timeline = Timeline()
        gate = RateGate(requests_per_second=RATE_LIMIT)
        gateway = sandbox_gateway(
            stripe_url, per_second=RATE_LIMIT, gate=gate, on_response=timeline.on_response
        )
        handler = build_handler(
            client=client,
            database=database,
            gateway=gateway,
            clock=clock,
            counts=cosmos_requests,
            writer=writer,
        )
        await controls.set_rate_limit(RATE_LIMIT)
        await controls.clear_requests()
        try:
            print("bulk: the cold start begins", file=sys.stderr, flush=True)
            with meter.measure(where_the_time_went):
                timeline.start()
                sampling = asyncio.ensure_future(timeline.sample_cpu())
                try:
                    results, requeued = await enrich_all(
                        handler,
                        list(truths),
                        requested_at=clock.now,
                        concurrency=plan.concurrency,
                        timeline=timeline,
                    )
                finally:
                    sampling.cancel()
            elapsed = where_the_time_went["wall_seconds"]
            log = await controls.requests()
            stored = await stored_enrichment_states(transactions)
            client_429s = gateway._http.rate_limited  # noqa: SLF001 - the gateway keeps no public count
        finally:
            await gateway.close()
    lower_bound = answered(log) / RATE_LIMIT
    return {
        "payments": len(results),
        "concurrency": plan.concurrency,
        "rate_limit_per_second": RATE_LIMIT,
        "gateway_requests_per_second": RATE_LIMIT,
        "calls": call_counts(log),
        "calls_per_payment": round(log["total"] / len(results), 4),
        "target": TARGET_BULK,
        "meets_target": log["total"] / len(results) <= TARGET_BULK,
        "cold_start": {
            "seconds": round(elapsed, 2),
            "lower_bound_seconds": round(lower_bound, 2),
            "lower_bound": "calls the sandbox answered (not 429) / 25 per second",
            "ratio_to_lower_bound": round(elapsed / lower_bound, 3),
            "target_ratio": TARGET_COLD_START_RATIO,
            "meets_target": elapsed / lower_bound <= TARGET_COLD_START_RATIO,
            "answered_429": int(log["by_status"].get("429", 0)),
            "429_seen_by_gateway": client_429s,
            "requeued_by_retryable_errors": requeued,
            "every_payment_enriched": len(results) == len(truths),
            "timeline": timeline.summary(gate),
        },
        "cosmos_requests": cosmos_summary(cosmos_requests, len(results)),
        "where_the_time_went": where_the_time_went,
        "results": stored_states(results),
        "stored_enrichment_states": stored,
        "correctness": correctness(results, truths),
    }


# -- 3. naive ----------------------------------------------------------------------------------------------


async def connected_account_ids(gateway: StripeApiGateway) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await gateway.list_connected_accounts(starting_after=cursor)
        ids.extend(str(account["id"]) for account in page.data)
        if not page.has_more:
            return ids
        cursor = page.last_id


async def probe(gateway: StripeApiGateway, payment_id: str, accounts: Sequence[str | None]) -> str | None:
    """The first account (None: the platform) that can read the payment, trying each in turn."""
    for account in accounts:
        try:
            if payment_id.startswith("pi_"):
                await gateway.retrieve_payment_intent(payment_id, account=account)
            else:
                await gateway.retrieve_charge(payment_id, account=account)
        except StripeObjectMissingError:
            continue
        return account
    return None


async def run_naive(*, stripe_url: str, controls: SandboxControls, plan: Plan) -> dict[str, Any]:
    """Try the platform, then each connected account in turn, for each payment (locating only)."""
    world = await controls.payments()
    # Every n-th payment in the order the world created them: each hour, route and account alike.
    truths = {payment_id: world[payment_id] for payment_id in list(world)[:: plan.naive_every]}
    await controls.set_rate_limit(NAIVE_RATE_LIMIT)
    await controls.clear_requests()
    gateway = sandbox_gateway(stripe_url, per_second=NAIVE_GATE_PER_SECOND)
    try:
        started = time.perf_counter()
        accounts: list[str | None] = [None, *await connected_account_ids(gateway)]
        work = iter(truths)
        owners: dict[str, str | None] = {}

        async def worker() -> None:
            for payment_id in work:
                owners[payment_id] = await probe(gateway, payment_id, accounts)

        await asyncio.gather(*(worker() for _ in range(NAIVE_CONCURRENCY)))
        elapsed = time.perf_counter() - started
        log = await controls.requests()
    finally:
        await gateway.close()
        await controls.set_rate_limit(RATE_LIMIT)
    platform_id = next(t["account_id"] for t in truths.values() if t["route"] == "platform")
    wrong_owner = sum((owners[p] or platform_id) != truth["account_id"] for p, truth in truths.items())
    return {
        "method": "retrieve each payment from the platform, then from each connected account in turn "
        "until found; locating only (tracing its money would cost more calls still)",
        "payments": len(owners),
        "payments_in_the_world": len(world),
        "sample": "every payment"
        if plan.naive_every == 1
        else f"every {plan.naive_every}th payment of the world, in the order they were created",
        "connected_accounts": len(accounts) - 1,
        "calls": call_counts(log),
        "calls_per_payment": round(log["total"] / len(owners), 4),
        "sandbox_rate_limit_per_second": NAIVE_RATE_LIMIT,
        "seconds_measured": round(elapsed, 2),
        "estimated_seconds_at_25_per_second_for_the_world": round(
            log["total"] / len(owners) * len(world) / RATE_LIMIT, 1
        ),
        "estimate": "calls per payment x payments in the world / 25 per second (the pass ran with the "
        "sandbox's limit raised: the limit changes its time, not its calls)",
        "payments_located_on_the_wrong_account": wrong_owner,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


# -- running -------------------------------------------------------------------------------------------


async def run_all(
    *,
    cosmos_endpoint: str,
    stripe_url: str,
    plan: Plan,
    phases: Sequence[str],
    meter: CpuMeter,
    save: Callable[[dict[str, Any]], None],
) -> None:
    """The phases asked for, in order; ``save`` gets the figures after each (a long run keeps what it has)."""
    scenario = Scenario(
        seed=SEED, events=EVENTS, orders=0, organizers=ORGANIZERS, sales_per_hour=plan.sales_per_hour
    )
    async with aiohttp.ClientSession() as session:
        controls = SandboxControls(session, stripe_url)
        common = {"cosmos_endpoint": cosmos_endpoint, "stripe_url": stripe_url, "controls": controls}
        if "trickle" in phases:
            print("trickle: starting", file=sys.stderr, flush=True)
            save({"trickle": await run_trickle(**common, scenario=scenario, plan=plan, meter=meter)})
        else:
            # The generator reveals the same sales in one long advance as in many short ones.
            minutes = plan.batches * BATCH_MINUTES
            await controls.advance(minutes)
            scenario.advance(minutes=minutes)
        if "bulk" in phases:
            print("bulk: starting", file=sys.stderr, flush=True)
            # The trickle's enricher (its indexes' memory, tasks, clients) is garbage now; collected
            # here, so that the cold start runs on the heap of a fresh process, as after a deploy.
            gc.collect()
            save({"bulk": await run_bulk(**common, scenario=scenario, plan=plan, meter=meter)})
        if "naive" in phases:
            print("naive: starting", file=sys.stderr, flush=True)
            save({"naive": await run_naive(stripe_url=stripe_url, controls=controls, plan=plan)})


def world_description(plan: Plan) -> dict[str, Any]:
    return {
        "seed": SEED,
        "connected_accounts": ORGANIZERS,
        "events": EVENTS,
        "initial_orders": 0,
        "hourly_advances": plan.batches,
        "sales_per_hour": plan.sales_per_hour,
        "payments": plan.payments,
        "routes": "platform, destination and direct charges, separate charges and transfers "
        "(one in three made five hours after its charge; trickle applies each hour's transfer.created); "
        "ch_ ids with and without a PaymentIntent; "
        "one organizer in three pays out by hand (not_traceable)",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan(
        batches=args.batches,
        sales_per_hour=args.sales_per_hour,
        payments=args.payments,
        concurrency=args.concurrency,
        naive_every=args.naive_every,
        write_processes=args.write_processes,
    )
    results: dict[str, Any] = {
        "note": NOTE,
        "driver": DRIVER,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "world": world_description(plan),
        "phases": list(args.phases),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }

    def save(figures: dict[str, Any]) -> None:
        results.update(figures)
        results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        write_results(args.out, results)

    cosmos = start_cosmos(timeout_seconds=60.0)
    try:
        stripe = start_stripe_sandbox(rate_limit=RATE_LIMIT, plan=plan)
        try:
            asyncio.run(
                run_all(
                    cosmos_endpoint=cosmos.ready["endpoint"],
                    stripe_url=stripe.ready["url"],
                    plan=plan,
                    phases=args.phases,
                    meter=CpuMeter({"Cosmos DB stand-in": cosmos.pid, "Stripe sandbox": stripe.pid}),
                    save=save,
                )
            )
        finally:
            stripe.stop()
    finally:
        cosmos.stop()
    return results


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def summary(results: dict[str, Any]) -> list[str]:
    lines = []
    if bulk := results.get("bulk"):
        cold = bulk["cold_start"]
        line = cold["timeline"]
        lines += [
            (
                f"bulk: {bulk['calls']['total']} calls for {bulk['payments']} payments = "
                f"{bulk['calls_per_payment']} per payment (target <= {TARGET_BULK}: "
                f"{_verdict(bulk['meets_target'])}); "
                f"{bulk['correctness']['payments_with_mismatches']} payments differ from the ground truth"
            ),
            (
                f"cold start: {cold['seconds']} s against a lower bound of {cold['lower_bound_seconds']} s = "
                f"{cold['ratio_to_lower_bound']}x (target <= {TARGET_COLD_START_RATIO}x: "
                f"{_verdict(cold['meets_target'])}); 429s answered {cold['answered_429']}, "
                f"every payment enriched: {cold['every_payment_enriched']}"
            ),
            (
                f"cold start timeline: last Stripe call answered at "
                f"{line['last_stripe_call_answered_seconds']} s ({line['payments_done_by_then']} payments "
                f"done by then), last payment done "
                f"{line['last_call_to_last_payment_seconds']} s later; the gate closed "
                f"{line['gate_closed_after_429_seconds']} s after {line['gate_pauses_after_429']} 429s"
            ),
        ]
        if memory := bulk["where_the_time_went"].get("memory_mb"):
            lines.append(
                f"cold start memory (this process: the enricher and the benchmark's driver): peak "
                f"{memory['peak']} MB, {memory['at_the_end']} MB at the end"
            )
        if memory := bulk["where_the_time_went"].get(f"memory_mb of {WRITE_PROCESS_CPU}"):
            lines.append(
                f"cold start memory of {WRITE_PROCESS_CPU}: peak {memory['peak']} MB, "
                f"{memory['at_the_end']} MB at the end; its CPU "
                f"{bulk['where_the_time_went']['cpu_seconds'].get(WRITE_PROCESS_CPU)} s"
            )
        if collected := bulk["where_the_time_went"].get("garbage_collection"):
            lines.append(
                f"cold start garbage collection (thresholds {collected['thresholds']}): "
                f"{collected['collections_by_generation']} collections by generation, "
                f"{collected['cpu_seconds']} CPU-s, longest pause {collected['longest_pause_seconds']} s"
            )
    if trickle := results.get("trickle"):
        lines.append(
            f"trickle: {trickle['calls']['total']} calls for {trickle['payments']} payments in "
            f"{trickle['batches']} batches = {trickle['calls_per_payment']} per payment "
            f"(target <= {TARGET_TRICKLE}: {_verdict(trickle['meets_target'])}); "
            f"{trickle['correctness']['payments_with_mismatches']} payments differ from the ground truth"
        )
    if naive := results.get("naive"):
        lines.append(
            f"naive: {naive['calls']['total']} calls = {naive['calls_per_payment']} per payment, "
            f"about {naive['estimated_seconds_at_25_per_second_for_the_world']} s at 25 requests/s for "
            f"the world ({naive['sample']})"
        )
    return lines


def _verdict(met: bool) -> str:  # noqa: FBT001 - a yes/no printed as text
    return "met" if met else "NOT met"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/enricher.json"))
    # A smaller world for a trial run: fewer hours and sales, and the payments they reveal.
    parser.add_argument("--batches", type=int, default=BATCHES, help="hourly advances (trickle batches)")
    parser.add_argument("--sales-per-hour", type=float, default=SALES_PER_HOUR)
    parser.add_argument(
        "--phases",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        default=list(PHASES),
        help="comma-separated, from: trickle, bulk, naive (default: all; bulk without trickle first "
        "advances the world to its end in one step)",
    )
    parser.add_argument(
        "--payments", type=int, default=PAYMENTS, help="payments the world must have (0: not checked)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=MAX_CONCURRENCY, help="payments enriched at once (trickle, bulk)"
    )
    parser.add_argument(
        "--naive-every",
        type=int,
        default=NAIVE_EVERY,
        help="the naive pass probes every n-th payment (1: all); its calls per payment do not depend "
        "on the rate limit, only its time does",
    )
    parser.add_argument(
        "--write-processes",
        type=int,
        choices=(0, 1),
        default=1,
        help="as OT_ENRICHER_WRITE_PROCESSES: 1 (serve's default) writes the transactions in a child "
        "process; 0 in the benchmark's own",
    )
    args = parser.parse_args(argv)
    configure_logging(level="ERROR", fmt="console", service_name="enricher-bench")
    tune_garbage_collection(CONSUMER_GC_THRESHOLDS)  # as ``python -m enricher serve`` does
    results = run(args)
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
