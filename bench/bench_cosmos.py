"""Benchmark the Cosmos DB stand-in: change feed latency, and batch rates before and after atomic batches.

    uv run --no-sync python bench/bench_cosmos.py --out bench/results/cosmos.json

1. Change feed latency: one client writes items one at a time while another reads the change feed
   (latest-version pull model) poll after poll, each from the last poll's continuation. For each item:
   the time from its write's acknowledgement to the end of the first poll that returned it; p50 and p99.
2. Raw transactional batch rate: batches of 100 upserts per partition, ingest's write concurrency,
   against the stand-in as patched now (atomic batches) and against a baseline built from the newest
   earlier version of the patch file whose batches were not atomic (taken from git history), in the
   same run, alternating which goes first, the median round of each. Target: atomic batches at most
   20% slower.

Both stand-ins run on this machine and share its cores with the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from devstack import cosmos
from devstack.processes import ManagedProcess, start_process
from otcommon.settings import CosmosConnection
from otcommon.store import DEFAULT_TOPOLOGY, MAX_BATCH_OPERATIONS, create_cosmos_client, provision

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from azure.cosmos.aio import ContainerProxy

PATCH_FILE = Path("devstack/patches/@vercel+cosmosdb-server+1.0.1.patch")
PACKAGE = Path("node_modules/@vercel/cosmosdb-server")
# Text only the atomic batch handler has: patch versions without it are the non-atomic baseline.
ATOMIC_MARKER = "collection.documents.rollback("
WRITE_CONCURRENCY = 16  # ingest's default ingest_write_concurrency
TARGET_BATCH_RATIO = 0.80  # atomic batches may be at most 20% slower
NOTE = (
    "The stand-ins ran on this machine and shared its "
    f"{os.cpu_count()} cores with the benchmark (and with whatever else the machine was running)."
)


def connection(endpoint: str, database: str) -> CosmosConnection:
    return CosmosConnection(endpoint=endpoint, key=SecretStr(cosmos.EMULATOR_KEY), database=database)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# -- 1. change feed latency -----------------------------------------------------------------------


async def measure_change_feed(endpoint: str, *, writes: int) -> dict[str, Any]:
    """Write -> first poll that returns the item, over ``writes`` items written one at a time."""
    database = f"bench-feed-{uuid.uuid4().hex[:8]}"
    async with (
        create_cosmos_client(connection(endpoint, database)) as writer_client,
        create_cosmos_client(connection(endpoint, database)) as reader_client,
    ):
        await provision(writer_client, database=database, topology=DEFAULT_TOPOLOGY)
        writer = writer_client.get_database_client(database).get_container_client("transactions")
        reader = reader_client.get_database_client(database).get_container_client("transactions")
        [_ async for _ in reader.query_items_change_feed()]  # start from now
        continuation = reader.client_connection.last_response_headers["etag"]
        acknowledged: dict[str, float] = {}
        seen: dict[str, float] = {}
        polls = 0

        async def write_all() -> None:
            for n in range(writes):
                item_id = f"feed-{n}"
                await writer.upsert_item({"id": item_id, "eventId": f"ev{n % 10}", "n": n})
                acknowledged[item_id] = time.perf_counter()
                await asyncio.sleep(0.002)  # a steady trickle of writes, not one burst

        async def poll_until_all_seen() -> None:
            nonlocal continuation, polls
            while len(seen) < writes:
                # Each page is one poll (one request); a pass ends at the first empty answer.
                pages = reader.query_items_change_feed(continuation=continuation).by_page()
                async for page in pages:
                    items = [item["id"] async for item in page]
                    polled = time.perf_counter()
                    polls += 1
                    for item_id in items:
                        seen.setdefault(item_id, polled)
                continuation = reader.client_connection.last_response_headers["etag"]
                polls += 1  # the empty answer that ended the pass

        started = time.perf_counter()
        await asyncio.gather(write_all(), poll_until_all_seen())
        elapsed = time.perf_counter() - started
        await writer_client.delete_database(database)
    latencies_ms = [(seen[item_id] - acknowledged[item_id]) * 1000 for item_id in acknowledged]
    return {
        "writes": writes,
        "polls": polls,
        "seconds": round(elapsed, 3),
        "latency_ms_p50": round(statistics.median(latencies_ms), 2),
        "latency_ms_p99": round(percentile(latencies_ms, 0.99), 2),
        "latency_ms_max": round(max(latencies_ms), 2),
    }


# -- 2. batch rate, non-atomic baseline vs atomic -----------------------------------------------------


def documents(count: int, *, events: int) -> list[dict[str, Any]]:
    """Documents about the size of a stored transaction (some 30 fields)."""
    return [
        {
            "id": f"tx-{n}",
            "eventId": f"ev{n % events}",
            **{f"field{k}": f"value {n} {k} {'x' * 12}" for k in range(28)},
        }
        for n in range(count)
    ]


def batches(items: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    by_event: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_event.setdefault(str(item["eventId"]), []).append(item)
    return [
        group[start : start + MAX_BATCH_OPERATIONS]
        for group in by_event.values()
        for start in range(0, len(group), MAX_BATCH_OPERATIONS)
    ]


async def batch_rate(endpoint: str, work: Sequence[Sequence[dict[str, Any]]]) -> float:
    """Documents per second stored by transactional batches of upserts, into a database of its own."""
    database = f"bench-batch-{uuid.uuid4().hex[:8]}"
    async with create_cosmos_client(connection(endpoint, database)) as client:
        await provision(client, database=database, topology=DEFAULT_TOPOLOGY)
        container = client.get_database_client(database).get_container_client("transactions")
        await container.upsert_item({"id": "warm-up", "eventId": "ev0"})
        queue: Iterator[Sequence[dict[str, Any]]] = iter(work)

        async def worker(target: ContainerProxy) -> None:
            for batch in queue:  # one shared iterator: each batch goes to exactly one worker
                operations: list[Any] = [("upsert", (dict(item),)) for item in batch]
                await target.execute_item_batch(operations, partition_key=batch[0]["eventId"])

        started = time.perf_counter()
        await asyncio.gather(*(worker(container) for _ in range(WRITE_CONCURRENCY)))
        elapsed = time.perf_counter() - started
        await client.delete_database(database)
    return sum(len(batch) for batch in work) / elapsed


def baseline_patch(repo: Path) -> tuple[str, str]:
    """(commit, text) of the newest committed version of the patch file without atomic batches."""
    commits = subprocess.run(  # noqa: S603 - fixed git command
        ["git", "log", "--format=%H", "--", str(PATCH_FILE)],  # noqa: S607 - git from PATH
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for commit in commits:
        text = subprocess.run(  # noqa: S603 - fixed git command
            ["git", "show", f"{commit}:{PATCH_FILE}"],  # noqa: S607 - git from PATH
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        if ATOMIC_MARKER not in text:
            return commit, text
    raise RuntimeError(f"no version of {PATCH_FILE} without atomic batches in this clone's history")


def build_baseline(repo: Path, work: Path) -> tuple[str, Path]:
    """A copy of the stand-in package with the current patch taken off and the baseline patch put on."""
    commit, text = baseline_patch(repo)
    node_dir = repo / "devstack"
    shutil.copytree(node_dir / PACKAGE, work / PACKAGE)
    shutil.copytree(node_dir / "cosmos", work / "cosmos")
    (work / "baseline.patch").write_text(text, encoding="utf-8")
    for args in (
        ["-R", str(repo / "devstack" / PATCH_FILE.relative_to("devstack"))],
        [str(work / "baseline.patch")],
    ):
        subprocess.run(["git", "apply", *args], cwd=work, check=True)  # noqa: S603, S607 - fixed git command
    return commit, work


def start_standin(node_dir: Path) -> ManagedProcess:
    """The stand-in from ``node_dir``; its package's dependencies resolve from the project's install."""
    node_dir = node_dir.resolve()
    env = dict(os.environ, NODE_PATH=str(Path("devstack/node_modules").resolve()))
    command = [shutil.which("node") or "node", str(node_dir / "cosmos" / "server.js"), "--port", "0"]
    return start_process(
        "cosmos", command, ready_pattern=cosmos.READY_PATTERN, timeout_seconds=60.0, cwd=node_dir, env=env
    )


def measure_batches(baseline_dir: Path, *, count: int, rounds: int) -> dict[str, Any]:
    """Median batch rates over ``rounds`` of the baseline and the current stand-in, alternating.

    The first stand-in measured in this process runs measurably faster than the later ones, whichever
    it is, so the order flips every round and the median counts, not the best round.
    """
    work = batches(documents(count, events=50))
    rates: dict[str, list[float]] = {"baseline_non_atomic": [], "atomic": []}
    stand_ins = [("baseline_non_atomic", baseline_dir), ("atomic", Path("devstack"))]
    for round_number in range(rounds):
        for name, node_dir in stand_ins if round_number % 2 == 0 else stand_ins[::-1]:
            process = start_standin(node_dir)
            try:
                rates[name].append(asyncio.run(batch_rate(process.ready["endpoint"], work)))
            finally:
                process.stop()
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratio = median["atomic"] / median["baseline_non_atomic"]
    return {
        "documents": count,
        "batches": len(work),
        "concurrency": WRITE_CONCURRENCY,
        "rounds": rounds,
        "documents_per_second": {name: round(value, 1) for name, value in median.items()},
        "all_rounds_documents_per_second": {
            name: [round(v, 1) for v in values] for name, values in rates.items()
        },
        "atomic_to_baseline": round(ratio, 3),
        "meets_target": ratio >= TARGET_BATCH_RATIO,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "note": NOTE,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    process = cosmos.start_cosmos(timeout_seconds=60.0)
    try:
        results["change_feed"] = asyncio.run(
            measure_change_feed(process.ready["endpoint"], writes=args.writes)
        )
    finally:
        process.stop()
    with tempfile.TemporaryDirectory(prefix="bench-cosmos-") as temporary:
        commit, baseline_dir = build_baseline(Path.cwd(), Path(temporary))
        results["batch"] = measure_batches(baseline_dir, count=args.documents, rounds=args.rounds)
        results["batch"]["baseline_patch_commit"] = commit
    return results


def summary(results: dict[str, Any]) -> list[str]:
    feed = results["change_feed"]
    batch = results["batch"]
    rates = batch["documents_per_second"]
    verdict = "met" if batch["meets_target"] else "NOT met"
    feed_line = (
        f"change feed write -> next poll: p50 {feed['latency_ms_p50']} ms, p99 {feed['latency_ms_p99']} ms "
        f"({feed['writes']} writes, {feed['polls']} polls)"
    )
    batch_line = (
        f"raw batch upserts: atomic {rates['atomic']} docs/s, non-atomic baseline "
        f"{rates['baseline_non_atomic']} docs/s: {batch['atomic_to_baseline']:.1%} "
        f"(target >= {TARGET_BATCH_RATIO:.0%}: {verdict})"
    )
    return [feed_line, batch_line]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/cosmos.json"))
    parser.add_argument("--writes", type=int, default=1000, help="items written while the feed is polled")
    parser.add_argument("--documents", type=int, default=50_000, help="documents written by batch per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per stand-in (the median counts)")
    args = parser.parse_args(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
