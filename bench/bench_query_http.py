"""Benchmark the query API as a running process over HTTP, at 1,000,000 transactions over 50 events.

    uv run --no-sync python bench/bench_query_http.py --out bench/results/query_http.json
    uv run --no-sync python bench/bench_query_http.py --startup-only --cosmos-rows 1000000 \
        --out bench/results/query_startup.json     # only part 1, at a million documents

bench/bench_query.py times the read model's functions in-process; this one runs what is deployed:

1. Start to ready as deployed, at container sizes the Cosmos DB stand-in can serve (``--cosmos-rows``):
   a fresh stand-in (its Node heap raised with ``--cosmos-heap-mb``) is filled with generated
   transaction documents (bench/query_data.py: shaped as ingest stores them) by transactional
   batches of 100 per partition, several at once, as ingest writes; ``python -m query_api serve``
   is started against it; the time until ``/readyz`` answers 200, the process's resident memory
   then, and the CPU seconds the API and the stand-in spent in between. The API loads through the
   change feed's latest versions from the beginning (services/query-api/src/query_api/loading.py).
   Then the same load is replayed in this process with each part timed: waiting for change feed
   pages through the SDK,
   the JSON decoding of the same pages alone, the read model's upserts, the per-event partials.
2. At ``--rows`` (1,000,000), the same app runs as its own process fed from a file of JSON pages
   (bench/query_http_server.py): start to ready without Cosmos DB (reading, decoding, upserts)
   and resident memory, then (``--startup-only`` stops after part 1)
3. Server time: requests one at a time, each answer's ``Server-Timing: app;dur=`` (the app's own
   time) beside the time the client saw, for a mix of ``/api/analytics`` filter combinations, and
   ``/api/transactions`` and ``/api/customers`` pages; and
4. Throughput: a second process (this file with ``--load-generator``) sends a mixed load over
   loopback (analytics with various filters, pages with search and sort, detail routes) closed-loop
   with 1, 2, 4, ... requests in flight, each level for a bounded time; requests/s and latency per
   level (and the server's ``Server-Timing: wait``, its queueing for an answer thread), and the
   issue's figure: the most requests in flight whose p99 stays within 200 ms, and its requests/s.
   ``--answer-threads`` sets the API's ``OT_QUERY_API_ANSWER_THREADS``.

Everything shares the machine's cores with whatever else it runs; the load average before and after
is in the results file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import SecretStr
from query_data import generate

from devstack.cosmos import EMULATOR_KEY, READY_PATTERN, connection_string, node_project_dir, server_command
from devstack.processes import start_process
from devstack.servicebus.testing import free_port
from otcommon.settings import CosmosConnection
from otcommon.store import DEFAULT_TOPOLOGY, MAX_BATCH_OPERATIONS, create_cosmos_client, provision

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from azure.cosmos.aio import ContainerProxy

    from devstack.processes import ManagedProcess

TARGET_P99_MS = 200.0
TARGET_ANALYTICS_P95_MS = 50.0
TARGET_PAGE_P95_MS = 100.0
TARGET_RSS_MB = round(1.5e9 / 2**20, 1)  # 1.5 GB read as 10^9 bytes (1,430.5 MiB): the stricter reading
SECRET = "bench-query-http-secret-of-at-least-32-bytes"  # noqa: S105 - signs local tokens only
SERVICEBUS_UNUSED = (
    "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;"
)
GENERATE_CHUNK = 20_000
WRITE_CONCURRENCY = 8
LOAD_PAGE_SIZE = 1000  # query_api.loading.LOAD_PAGE_SIZE: the replay reads pages as the API does
READY_TIMEOUT_SECONDS = 7200.0
POLL_SECONDS = 0.2
SERVER_TIMING = "Server-Timing"
NOTE = (
    f"Measured on a machine with {os.cpu_count()} cores shared with other work running at the same time "
    "(other engineers' tests, builds and benchmarks: see the load averages); the Cosmos DB stand-in, "
    "the query API and the load generator ran on the same cores. Figures vary with that load."
)
PAGES_FILE_NOTE = (
    "start, server_time and throughput: the deployed app as its own process, its start-up query "
    "answered from this file (one JSON page of 1,000 documents a line, decoded as the SDK decodes "
    "a page) instead of the Cosmos DB stand-in, which cannot page through this many documents; "
    "start_from_cosmos_stand_in has the deployed path at sizes it can serve."
)
ONE_EVENT = "event-007"
TOUR = "event-010,event-011,event-012,event-013,event-014"
EVERY_BREAKDOWN = "ticketTypes,sources,referralCodes,events,deposits,routes,timeSeries"

# What the dashboard asks, as query strings (the same combinations as bench_query.py's mix).
ANALYTICS: dict[str, str] = {
    "all events": "",
    "all events, every breakdown": f"include={EVERY_BREAKDOWN}",
    "all events, Adelaide": "tz=Australia/Adelaide",
    "one event": f"eventId={ONE_EVENT}",
    "one event, every breakdown, hourly, Kolkata": (
        f"eventId={ONE_EVENT}&include={EVERY_BREAKDOWN}&tz=Asia/Kolkata&granularity=hour"
        "&from=2026-03-01T00:00:00Z&to=2026-06-01T00:00:00Z"
    ),
    "tour of 5": f"eventId={TOUR}",
    "tour of 5, by event/type/source": f"eventId={TOUR}&include=events,ticketTypes,sources",
    "purchase month": "from=2026-05-01T00:00:00Z&to=2026-06-01T00:00:00Z",
    "redemption month": "from=2026-06-01T00:00:00Z&to=2026-07-01T00:00:00Z&dateMode=redemption",
    "ticket type": "ticketTypes=VIP",
    "source": "source=boxOffice",
    "refunded": "refunded=true",
    "disputed": "disputed=true",
    "not valid": "valid=false",
    "referral code": "referralCode=Summer",
    "search": "q=smith",
    "tour, month, online, not refunded, Kathmandu, every breakdown": (
        f"eventId={TOUR}&from=2026-04-01T00:00:00Z&to=2026-05-01T00:00:00Z&source=online"
        f"&refunded=false&tz=Asia/Kathmandu&include={EVERY_BREAKDOWN}"
    ),
    "all, types, code, valid, weekly, New York": (
        "ticketTypes=vip,general&referralCode=summer,radio&valid=true&include=timeSeries,referralCodes"
        "&tz=America/New_York&granularity=week"
    ),
    "one event, refunded, by type": f"eventId={ONE_EVENT}&refunded=true&include=ticketTypes",
}
TRANSACTION_PAGES: dict[str, str] = {
    "search 'smith', by amount desc": "q=smith&sort=TotalAmount&order=desc",
    "search 'lima', by purchase date, page 3": "q=lima&sort=PurchaseDate&page=3",
    "all, by name": "sort=Name",
    "one event, search 'ana', by amount": f"eventId={ONE_EVENT}&q=ana&sort=TotalAmount",
}
CUSTOMER_PAGES: dict[str, str] = {
    "search 'smith', by name": "q=smith&sort=name",
    "one event, by last purchase desc": f"eventId={ONE_EVENT}&sort=lastPurchase&order=desc",
    "tour, refunded, by orders desc": f"eventId={TOUR}&refunded=true&sort=orders&order=desc",
}
ALL_CUSTOMERS = ("all, by total spent desc", "sort=totalSpent&order=desc")
"""Every buyer of every event, grouped per request: measured once per round, left out of the load."""


# -- measuring ------------------------------------------------------------------------------------


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank), the largest, and the count of samples, in milliseconds."""
    if not samples_ms:
        return {"samples": 0}
    ordered = sorted(samples_ms)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 2)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1], 2),
        "samples": len(ordered),
    }


def server_ms(headers: Any, metric_name: str = "app") -> float | None:
    """The app's own time from ``Server-Timing: app;dur=<ms>`` (or another metric of the header).

    ``wait`` is the part of it an answer spent waiting for an answer thread and the read model.
    """
    for metric in headers.get(SERVER_TIMING, "").split(","):
        name, _, rest = metric.strip().partition(";")
        if name == metric_name and rest.startswith("dur="):
            return float(rest.removeprefix("dur="))
    return None


def proc_status_mb(pid: int, key: str) -> float:
    """A ``/proc/<pid>/status`` memory line (VmRSS, VmHWM) in MB."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(f"{key}:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# -- 1. the Cosmos DB stand-in, filled ------------------------------------------------------------


def start_cosmos_with_heap(heap_mb: int) -> ManagedProcess:
    """The stand-in as devstack starts it, with Node's heap limit raised for a million documents.

    Node's default old-space limit (about 4 GB here) is too small for 1,000,000 documents of about
    2 KB held as JavaScript objects; NODE_OPTIONS raises it for this child only.
    """
    env = {**os.environ, "NODE_OPTIONS": f"--max-old-space-size={heap_mb}"}
    return start_process(
        "cosmos",
        server_command(host="127.0.0.1", port=0),
        ready_pattern=READY_PATTERN,
        timeout_seconds=60.0,
        cwd=node_project_dir(),
        env=env,
    )


def batches_of(documents: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Documents grouped by partition (``eventId``) and cut into transactional batches of 100."""
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        by_event[str(document["eventId"])].append(document)
    for group in by_event.values():
        for start in range(0, len(group), MAX_BATCH_OPERATIONS):
            yield group[start : start + MAX_BATCH_OPERATIONS]


async def fill(container: ContainerProxy, *, rows: int, events: int) -> dict[str, Any]:
    """Write the generated documents by batches, ``WRITE_CONCURRENCY`` at once; rate and checks."""
    written = 0
    write_seconds = 0.0
    for start in range(0, rows, GENERATE_CHUNK):
        documents = generate(rows, events=events, start=start, count=GENERATE_CHUNK).to_dicts()
        batches = iter(batches_of(documents))

        async def writer(batches: Iterator[list[dict[str, Any]]] = batches) -> None:
            for batch in batches:  # one shared iterator: each batch goes to exactly one writer
                operations: list[Any] = [("upsert", (document,)) for document in batch]
                await container.execute_item_batch(operations, partition_key=batch[0]["eventId"])

        began = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(WRITE_CONCURRENCY)))
        write_seconds += time.perf_counter() - began
        written += len(documents)
        if start % (10 * GENERATE_CHUNK) == 0:
            print(f"  stored {written:,} of {rows:,} documents", flush=True)
    return {
        "documents": written,
        "write_seconds": round(write_seconds, 1),
        "documents_per_second": round(written / write_seconds, 1),
        "batch_size": MAX_BATCH_OPERATIONS,
        "concurrency": WRITE_CONCURRENCY,
    }


async def fill_cosmos(endpoint: str, *, database: str, rows: int, events: int) -> dict[str, Any]:
    connection = cosmos_connection(endpoint, database=database)
    async with create_cosmos_client(connection, user_agent="query-http-bench") as client:
        await provision(client, database=database, topology=DEFAULT_TOPOLOGY)
        container = client.get_database_client(database).get_container_client("transactions")
        return await fill(container, rows=rows, events=events)


def cosmos_connection(endpoint: str, *, database: str) -> CosmosConnection:
    return CosmosConnection(endpoint=endpoint, key=SecretStr(EMULATOR_KEY), database=database)


# -- 2. start to ready ----------------------------------------------------------------------------


@dataclass
class RunningApi:
    """``python -m query_api serve`` as a child process, its address and its log file."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    started: float = field(default_factory=time.perf_counter)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL whatever is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def api_environment(*, endpoint: str, database: str, port: int, answer_threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "OT_QUERY_API_ANSWER_THREADS": str(answer_threads),
        "OT_COSMOS_CONNECTION_STRING": connection_string(endpoint),
        "OT_COSMOS_DATABASE": database,
        # The query API opens no Service Bus link; the shared settings still want a connection string.
        "OT_SERVICEBUS_CONNECTION_STRING": SERVICEBUS_UNUSED,
        "OT_QUERY_API_JWT_SECRET": SECRET,
        "OT_QUERY_API_HTTP_HOST": "127.0.0.1",
        "OT_QUERY_API_HTTP_PORT": str(port),
        "OT_LOG_FORMAT": "json",
    }


def start_api(
    *, endpoint: str, database: str, log_path: Path, answer_threads: int, pages_file: Path | None = None
) -> RunningApi:
    """The query API as deployed (``python -m query_api serve``), or fed from a file of pages."""
    port = free_port()
    command = [sys.executable, "-m", "query_api", "serve"]
    if pages_file is not None:
        command = [sys.executable, str(Path(__file__).with_name("query_http_server.py")), str(pages_file)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - this interpreter and the project's own code
            command,
            env=api_environment(
                endpoint=endpoint, database=database, port=port, answer_threads=answer_threads
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return RunningApi(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path)


class LogWatch:
    """Reads the API's log as it grows; remembers when (on this process's clock) a line first appeared."""

    def __init__(self, path: Path, wanted: Sequence[str]) -> None:
        self._path = path
        self._offset = 0
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self._wanted = wanted

    def poll(self) -> None:
        with self._path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            for wanted in self._wanted:
                if wanted in line and wanted not in self.seen:
                    with contextlib.suppress(ValueError):
                        self.seen[wanted] = (time.perf_counter(), json.loads(line))


async def wait_ready(api: RunningApi, *, cosmos_pid: int | None, ready_within: float) -> dict[str, Any]:
    """Poll /readyz until 200; seconds to listening, to loaded and to ready, memory and CPU then."""
    cosmos_cpu_before = cpu_seconds(cosmos_pid) if cosmos_pid else 0.0
    watch = LogWatch(api.log_path, ["read model loaded", "bench source drained", "query-api serving"])
    listening: float | None = None
    async with aiohttp.ClientSession() as session, asyncio.timeout(ready_within):
        while True:
            if api.process.poll() is not None:
                tail = api.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"the query API exited with {api.process.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(f"{api.base_url}/readyz") as response:
                    listening = listening or time.perf_counter()
                    if response.status == 200:  # noqa: PLR2004
                        break
            watch.poll()
            await asyncio.sleep(POLL_SECONDS)
    ready = time.perf_counter()
    watch.poll()
    loaded = watch.seen.get("read model loaded") or watch.seen.get("bench source drained")
    source = watch.seen.get("bench source drained")
    serving = watch.seen.get("query-api serving")
    return {
        "source_read_and_decode": (
            {key: source[1].get(key) for key in ("pages", "documents", "read_seconds", "decode_seconds")}
            if source
            else None
        ),
        "load_seconds_logged": serving[1].get("load_seconds") if serving else None,
        "seconds_to_listening": round((listening or ready) - api.started, 2),
        "seconds_to_loaded": round(loaded[0] - api.started, 2) if loaded else None,
        "seconds_to_ready": round(ready - api.started, 2),
        "loaded": {
            key: value
            for line in (loaded, serving)
            if line is not None
            for key, value in line[1].items()
            if key in {"read", "held", "refused"}
        },
        "rss_mb_at_ready": proc_status_mb(api.process.pid, "VmRSS"),
        "peak_rss_mb_until_ready": proc_status_mb(api.process.pid, "VmHWM"),
        "api_cpu_seconds_until_ready": round(cpu_seconds(api.process.pid), 1),
        "cosmos_cpu_seconds_until_ready": (
            round(cpu_seconds(cosmos_pid) - cosmos_cpu_before, 1) if cosmos_pid else None
        ),
        "poll_interval_seconds": POLL_SECONDS,
    }


# -- 3. server time, one request at a time --------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    kind: str
    name: str
    path: str


def probes() -> list[Probe]:
    cases = [Probe("analytics", name, f"/api/analytics?{query}") for name, query in ANALYTICS.items()]
    cases += [Probe("transactions", name, f"/api/transactions?{q}") for name, q in TRANSACTION_PAGES.items()]
    cases += [Probe("customers", name, f"/api/customers?{q}") for name, q in CUSTOMER_PAGES.items()]
    return cases


@dataclass(frozen=True)
class Answer:
    status: int
    client_ms: float
    """From sending the request to its last byte, as the client saw it."""
    server_ms: float | None
    """The app's own time (Server-Timing ``app``)."""
    wait_ms: float | None
    """The part of it spent waiting for an answer thread and the read model (Server-Timing ``wait``)."""


async def timed_get(session: aiohttp.ClientSession, url: str) -> Answer:
    """The answer's status and times (the body is read, not kept)."""
    began = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        return Answer(
            status=response.status,
            client_ms=(time.perf_counter() - began) * 1000,
            server_ms=server_ms(response.headers),
            wait_ms=server_ms(response.headers, "wait"),
        )


async def measure_server_time(base_url: str, token: str, *, rounds: int) -> dict[str, Any]:
    """Every probe ``rounds`` times, one request at a time: the server's time and the client's."""
    cases = probes()
    server: dict[str, list[float]] = defaultdict(list)
    client: dict[str, list[float]] = defaultdict(list)
    per_case: dict[str, list[float]] = defaultdict(list)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        # The first question after ready builds the per-event partials (rollups.py): its own figure.
        first = await timed_get(session, f"{base_url}/api/analytics")
        _expect_ok(first.status, "/api/analytics")
        for case in cases:  # warm every path once
            _expect_ok((await timed_get(session, base_url + case.path)).status, case.path)
        for _ in range(rounds):
            for case in [*cases, Probe("customers, every buyer", *ALL_CUSTOMERS)]:
                path = case.path if case.path.startswith("/") else f"/api/customers?{case.path}"
                answer = await timed_get(session, base_url + path)
                _expect_ok(answer.status, path)
                if answer.server_ms is None:
                    raise RuntimeError(f"{path}: no Server-Timing header")
                server[case.kind].append(answer.server_ms)
                client[case.kind].append(answer.client_ms)
                per_case[f"{case.kind}: {case.name}"].append(answer.server_ms)
    return {
        "first_analytics_after_ready_ms": {"server": first.server_ms, "client": round(first.client_ms, 1)},
        "server_ms": {kind: percentiles(values) for kind, values in server.items()},
        "client_ms": {kind: percentiles(values) for kind, values in client.items()},
        "median_server_ms_per_case": {
            name: round(sorted(values)[len(values) // 2], 1) for name, values in per_case.items()
        },
        "rounds": rounds,
    }


def _expect_ok(status: int, path: str) -> None:
    if status != 200:  # noqa: PLR2004
        raise RuntimeError(f"{path} answered {status}")


# -- 4. throughput from a second process ----------------------------------------------------------


def load_mix(detail_ids: dict[str, list[str]]) -> list[str]:
    """The paths the load draws from, equally likely: analytics, pages and detail routes."""
    paths = [f"/api/analytics?{query}" for query in ANALYTICS.values()]
    paths += [f"/api/transactions?{query}" for query in TRANSACTION_PAGES.values()]
    paths += [f"/api/customers?{query}" for query in CUSTOMER_PAGES.values()]
    paths += [f"/api/transactions/{tx}" for tx in detail_ids["transactions"]]
    paths += [f"/api/customers/{customer}" for customer in detail_ids["customers"]]
    return paths


async def detail_ids(base_url: str, token: str) -> dict[str, list[str]]:
    """Ids for the detail routes, from a page of one event (as the dashboard follows a row)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{base_url}/api/transactions?eventId={ONE_EVENT}&pageSize=10") as response,
    ):
        rows = (await response.json())["rows"]
    return {
        "transactions": [row["id"] for row in rows[:5]],
        "customers": [row["customerId"] for row in rows[:5]],
    }


async def closed_loop_level(
    base_url: str, token: str, *, paths: Sequence[str], in_flight: int, seconds: float, seed: int
) -> dict[str, Any]:
    """``in_flight`` clients, each sending its next request when the last one answered, for ``seconds``."""
    import random  # noqa: PLC0415 - only the load generator draws

    client_ms: list[float] = []
    app_ms: list[float] = []
    wait_ms: list[float] = []
    statuses: dict[str, int] = defaultdict(int)
    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        deadline = time.perf_counter() + seconds

        async def client(draw: random.Random) -> None:
            while time.perf_counter() < deadline:
                answer = await timed_get(session, base_url + draw.choice(paths))
                statuses[str(answer.status)] += 1
                client_ms.append(answer.client_ms)
                if answer.server_ms is not None:
                    app_ms.append(answer.server_ms)
                if answer.wait_ms is not None:
                    wait_ms.append(answer.wait_ms)

        began = time.perf_counter()
        await asyncio.gather(*(client(random.Random(seed * 1000 + n)) for n in range(in_flight)))
        elapsed_seconds = time.perf_counter() - began
    return {
        "in_flight": in_flight,
        "seconds": round(elapsed_seconds, 2),
        "requests": len(client_ms),
        "requests_per_second": round(len(client_ms) / elapsed_seconds, 2),
        "client_ms": percentiles(client_ms),
        "server_ms": percentiles(app_ms),
        "server_wait_ms": percentiles(wait_ms),
        "statuses": dict(statuses),
    }


async def generate_load(config: dict[str, Any]) -> dict[str, Any]:
    """Every level in turn; stops early once a level's p99 is far past the target (more only queues)."""
    levels = []
    for in_flight in config["levels"]:
        level = await closed_loop_level(
            config["base_url"],
            config["token"],
            paths=config["paths"],
            in_flight=in_flight,
            seconds=config["seconds"],
            seed=in_flight,
        )
        print(json.dumps({"level": level}), file=sys.stderr, flush=True)
        levels.append(level)
        if level["client_ms"].get("p99", 0) > config["give_up_p99_ms"]:
            break
    return {
        "method": "closed loop: N clients each sending its next request when the last answered",
        "mix": f"{len(config['paths'])} paths drawn uniformly: "
        f"{len(ANALYTICS)} analytics, {len(TRANSACTION_PAGES)} transaction pages, "
        f"{len(CUSTOMER_PAGES)} customer pages, the rest detail routes",
        "levels": levels,
        **within_target(levels),
    }


def within_target(levels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's figure: the most requests in flight whose client p99 stays within 200 ms, and its rate."""
    within = [level for level in levels if level["client_ms"].get("p99", math.inf) <= TARGET_P99_MS]
    highest = max(within, key=lambda level: level["in_flight"], default=None)
    return {
        "requests_per_second_at_p99_within_200ms": highest["requests_per_second"] if highest else None,
        "in_flight_then": highest["in_flight"] if highest else None,
        "client_p99_ms_then": highest["client_ms"]["p99"] if highest else None,
    }


def run_load_generator(
    base_url: str, token: str, *, paths: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """This file again, as a second process (its own interpreter and event loop), over loopback."""
    config = {
        "base_url": base_url,
        "token": token,
        "paths": paths,
        "levels": args.levels,
        "seconds": args.level_seconds,
        "give_up_p99_ms": args.give_up_p99_ms,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(config, file)
    try:
        finished = subprocess.run(  # noqa: S603 - this interpreter and this file
            [sys.executable, __file__, "--load-generator", file.name],
            capture_output=True,
            text=True,
            check=False,
            timeout=len(args.levels) * (args.level_seconds + 180) + 60,
        )
    finally:
        Path(file.name).unlink()
    if finished.returncode != 0:
        raise RuntimeError(f"the load generator failed: {finished.stderr[-3000:]}")
    return json.loads(finished.stdout)


# -- 5. where the start-up time goes --------------------------------------------------------------


async def replay_start(endpoint: str, *, database: str, cosmos_pid: int) -> dict[str, Any]:
    """The API's start-up load in this process, each part timed (the API has stopped: no contention).

    It reads as the API does: the change feed's latest versions from the beginning, in pages of
    ``FEED_LOAD_PAGE_SIZE``, each page upserted before the next is read.
    """
    from query_api.changefeed import CosmosChangeFeed  # noqa: PLC0415 - the replay alone needs these
    from query_api.filters import TransactionFilter  # noqa: PLC0415
    from query_api.loading import FEED_LOAD_PAGE_SIZE  # noqa: PLC0415
    from query_api.readmodel import ReadModel  # noqa: PLC0415
    from query_api.scope import EventScope  # noqa: PLC0415

    model = ReadModel()
    parts = {"cosmos_pages": 0.0, "json_decode": 0.0, "upsert": 0.0}
    pages = documents = 0
    cosmos_cpu = cpu_seconds(cosmos_pid)
    async with create_cosmos_client(cosmos_connection(endpoint, database=database)) as client:
        feed = CosmosChangeFeed(client.get_database_client(database).get_container_client("transactions"))
        began = waiting = time.perf_counter()
        async for items in feed.read_latest_versions(page_size=FEED_LOAD_PAGE_SIZE):
            parts["cosmos_pages"] += time.perf_counter() - waiting
            encoded = json.dumps(items)  # the same bytes again, to time their decoding alone
            decode_began = time.perf_counter()
            json.loads(encoded)
            parts["json_decode"] += time.perf_counter() - decode_began
            upsert_began = time.perf_counter()
            model.upsert(items)
            parts["upsert"] += time.perf_counter() - upsert_began
            pages += 1
            documents += len(items)
            waiting = time.perf_counter()
        loaded = time.perf_counter() - began - parts["json_decode"]
    cosmos_cpu = cpu_seconds(cosmos_pid) - cosmos_cpu
    partials_began = time.perf_counter()
    model.rollups().selected(EventScope.everything(), TransactionFilter())
    partials = time.perf_counter() - partials_began
    return {
        "documents": documents,
        "held": len(model),
        "pages": pages,
        "page_size": FEED_LOAD_PAGE_SIZE,
        "load_seconds": round(loaded, 1),
        "cosmos_pages_seconds": round(parts["cosmos_pages"], 1),
        "cosmos_stand_in_cpu_seconds": round(cosmos_cpu, 1),
        "json_decode_seconds_of_the_same_pages": round(parts["json_decode"], 1),
        "read_model_upsert_seconds": round(parts["upsert"], 1),
        "per_event_partials_seconds_at_first_question": round(partials, 1),
        "note": "cosmos_pages_seconds is the wait for each change feed page through the SDK: the "
        "stand-in's answer (linear in the page), the transfer and the SDK's JSON decoding, which "
        "json_decode_seconds_of_the_same_pages measures alone (json.loads of the same documents "
        "re-encoded, outside the load time); the upserts run between pages, as the API does.",
    }


# -- running it all -------------------------------------------------------------------------------


def local_token() -> str:
    from query_api.auth import issue_local_token  # noqa: PLC0415
    from query_api.settings import QueryApiSettings  # noqa: PLC0415

    settings = QueryApiSettings(
        cosmos_endpoint="http://127.0.0.1:1/",
        servicebus_connection_string=SecretStr(SERVICEBUS_UNUSED),
        query_api_jwt_secret=SecretStr(SECRET),
    )
    return issue_local_token(
        secret=SECRET, rules=settings.token_rules(), subject="bench", events=None, lifetime_seconds=6 * 3600
    )


def save(path: Path, results: dict[str, Any]) -> None:
    """Write the figures so far: a long run keeps what it measured if it is cut short."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    server = results["server_time"]["server_ms"]
    throughput = results["throughput"]["requests_per_second_at_p99_within_200ms"]
    return {
        "analytics_p95": server["analytics"]["p95"] <= TARGET_ANALYTICS_P95_MS,
        "transactions_page_p95": server["transactions"]["p95"] <= TARGET_PAGE_P95_MS,
        "customers_page_p95": server["customers"]["p95"] <= TARGET_PAGE_P95_MS,
        "rss_at_ready": results["start"]["rss_mb_at_ready"] <= TARGET_RSS_MB,
        "throughput_at_p99_within_200ms": throughput,
    }


async def start_from_stand_in(args: argparse.Namespace, rows: int) -> dict[str, Any]:
    """(a) as deployed: a fresh stand-in holding ``rows`` documents, the API started against it."""
    cosmos = start_cosmos_with_heap(args.cosmos_heap_mb)
    try:
        endpoint = cosmos.ready["endpoint"]
        database = f"bench-query-{uuid.uuid4().hex[:8]}"
        figures: dict[str, Any] = {"rows": rows}
        figures["fill"] = await fill_cosmos(endpoint, database=database, rows=rows, events=args.events)
        figures["stand_in_rss_mb"] = proc_status_mb(cosmos.pid, "VmRSS")
        with tempfile.TemporaryDirectory() as folder:
            api = start_api(
                endpoint=endpoint,
                database=database,
                log_path=Path(folder) / "query-api.log",
                answer_threads=args.answer_threads,
            )
            try:
                figures["start"] = await wait_ready(
                    api, cosmos_pid=cosmos.pid, ready_within=args.ready_timeout
                )
            finally:
                api.stop()
        print(f"stand-in, {rows:,} rows: {figures['start']}", flush=True)
        if rows <= args.replay_max_rows:
            figures["breakdown"] = await replay_start(endpoint, database=database, cosmos_pid=cosmos.pid)
            print(f"  breakdown: {figures['breakdown']}", flush=True)
        return figures
    finally:
        cosmos.stop()


def write_pages(path: Path, *, rows: int, events: int) -> dict[str, Any]:
    """The generated documents as the load reads them: one JSON page of 1,000 per line."""
    began = time.perf_counter()
    with path.open("w", encoding="utf-8") as pages:
        for start in range(0, rows, GENERATE_CHUNK):
            documents = generate(rows, events=events, start=start, count=GENERATE_CHUNK).to_dicts()
            for page in range(0, len(documents), LOAD_PAGE_SIZE):
                pages.write(json.dumps(documents[page : page + LOAD_PAGE_SIZE]) + "\n")
    return {
        "rows": rows,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "write_seconds": round(time.perf_counter() - began, 1),
    }


async def served_at_scale(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """(a) without Cosmos, then (b) and (c): the API process holding ``--rows`` documents."""
    with tempfile.TemporaryDirectory() as folder:
        pages_file = Path(folder) / "pages.jsonl"
        results["pages_file"] = write_pages(pages_file, rows=args.rows, events=args.events)
        results["pages_file"]["note"] = PAGES_FILE_NOTE
        save(args.out, results)
        api = start_api(
            endpoint="http://127.0.0.1:1/",
            database="unused",
            log_path=Path(folder) / "query-api.log",
            answer_threads=args.answer_threads,
            pages_file=pages_file,
        )
        try:
            results["start"] = await wait_ready(api, cosmos_pid=None, ready_within=args.ready_timeout)
            print(f"start from the pages file: {results['start']}", flush=True)
            save(args.out, results)
            token = local_token()
            results["server_time"] = await measure_server_time(api.base_url, token, rounds=args.rounds)
            print(f"server time: {results['server_time']['server_ms']}", flush=True)
            save(args.out, results)
            paths = load_mix(await detail_ids(api.base_url, token))
            load_before = load_average()
            results["throughput"] = await asyncio.to_thread(
                run_load_generator, api.base_url, token, paths=paths, args=args
            )
            results["throughput"]["load_average_before"] = load_before
            results["throughput"]["load_average_after"] = load_average()
            results["throughput"]["answer_threads"] = args.answer_threads
            results["rss_mb_after_load"] = proc_status_mb(api.process.pid, "VmRSS")
            results["peak_rss_mb"] = proc_status_mb(api.process.pid, "VmHWM")
            save(args.out, results)
        finally:
            api.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "benchmark": "query_http",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": NOTE,
        "rows": args.rows,
        "events": args.events,
        "load_average_before": load_average(),
        "targets": {
            "analytics_server_p95_ms": TARGET_ANALYTICS_P95_MS,
            "page_server_p95_ms": TARGET_PAGE_P95_MS,
            "rss_mb": TARGET_RSS_MB,
            "throughput_p99_ms": TARGET_P99_MS,
        },
        "start_from_cosmos_stand_in": [],
    }
    for rows in args.cosmos_rows:
        results["start_from_cosmos_stand_in"].append(asyncio.run(start_from_stand_in(args, rows)))
        save(args.out, results)
    if args.startup_only:
        results["load_average_after"] = load_average()
        return results
    asyncio.run(served_at_scale(args, results))
    results["load_average_after"] = load_average()
    results["met"] = verdicts(results)
    return results


def summary(results: dict[str, Any]) -> list[str]:
    lines = [
        f"stand-in, {run['rows']:,} rows: ready after {run['start']['seconds_to_ready']} s"
        for run in results["start_from_cosmos_stand_in"]
    ]
    if "start" not in results:  # --startup-only
        return [*lines, f"load average {results['load_average_before']} -> {results['load_average_after']}"]
    start, server = results["start"], results["server_time"]
    lines += [
        (
            f"start to ready {start['seconds_to_ready']} s (loaded at {start['seconds_to_loaded']} s), "
            f"RSS {start['rss_mb_at_ready']} MB"
        ),
    ]
    lines += [f"server time {kind}: {figures}" for kind, figures in server["server_ms"].items()]
    throughput = results["throughput"]
    lines += [
        f"  {level['in_flight']:>3} in flight: {level['requests_per_second']} req/s, "
        f"client {level['client_ms']}, waiting in the server p99 {level['server_wait_ms'].get('p99')} ms"
        for level in throughput["levels"]
    ]
    lines.append(
        f"requests/s at p99 <= 200 ms: {throughput['requests_per_second_at_p99_within_200ms']} "
        f"({throughput['in_flight_then']} in flight)"
    )
    lines.append(f"load average {results['load_average_before']} -> {results['load_average_after']}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/query_http.json"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="times each server-time probe is measured")
    parser.add_argument("--levels", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--level-seconds", type=float, default=30.0, help="how long each load level runs")
    parser.add_argument(
        "--answer-threads", type=int, default=2, help="the API's OT_QUERY_API_ANSWER_THREADS (its default: 2)"
    )
    parser.add_argument("--give-up-p99-ms", type=float, default=5000.0, help="no higher level past this p99")
    parser.add_argument("--cosmos-heap-mb", type=int, default=12_288, help="the stand-in's Node heap limit")
    parser.add_argument(
        "--cosmos-rows",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[5_000, 10_000, 20_000],
        help="container sizes at which the API is started against the stand-in (comma-separated)",
    )
    parser.add_argument(
        "--replay-max-rows", type=int, default=10_000, help="start-up breakdown at sizes up to this"
    )
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_SECONDS)
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only start the API against the stand-in at each --cosmos-rows (no pages file, no HTTP figures)",
    )
    parser.add_argument("--load-generator", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator is not None:
        config = json.loads(args.load_generator.read_text(encoding="utf-8"))
        print(json.dumps(asyncio.run(generate_load(config))))
        return 0
    # SIGTERM unwinds like Ctrl-C, so the stand-in and the API are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    results = run(args)
    save(args.out, results)
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
