"""Benchmark the webhook service: acknowledgement latency at 200 signed events/s, then every effect.

    uv run --no-sync python bench/bench_webhooks.py --out bench/results/webhooks.json

Starts the Cosmos DB stand-in and the Service Bus emulator (with the project's topology) as
processes on 127.0.0.1, stores transactions for the events to act on, and starts the real service
(``python -m webhooks serve``; by default two answer processes and one apply process) as a child
process. This process then sends signed Stripe events
over loopback at a fixed rate (open loop: each delivery leaves at its scheduled time whatever the
earlier ones are doing, as Stripe's do), platform and Connect events alike, and times each answer.

Then it waits until the service has applied every event and checks every effect in Cosmos DB and on
the bus: each refund and dispute in its transaction with the event that wrote it, each payout handed
to the enricher's queue once, each change announced once, each event recorded once and ``applied``.
Lost = an event whose effect is missing; applied twice = an event announced or handed over twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import stripe
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from pydantic import SecretStr

from devstack.cosmos import EMULATOR_KEY, connection_for, connection_string, start_cosmos
from devstack.paths import project_topology
from devstack.servicebus.testing import free_port, running_emulator
from otcommon.messages import decode_service_bus_message
from otcommon.payment_transactions import (
    PAYMENT_TRANSACTIONS_CONTAINER,
    payment_transactions_document,
    ref_of,
)
from otcommon.settings import CosmosConnection
from otcommon.store import DEFAULT_TOPOLOGY, create_cosmos_client, provision
from otcommon.telemetry import configure_logging

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from azure.cosmos.aio import DatabaseProxy

    from devstack.processes import ManagedProcess

TARGET_P99_MS = 100.0  # SPEC section 8: acknowledgement p99 <= 100 ms at 200 events/s
PLATFORM_SECRET = "whsec_bench_platform"  # noqa: S105 - signs the benchmark's own deliveries
CONNECT_SECRET = "whsec_bench_connect"  # noqa: S105
CONNECTED_ACCOUNT = "acct_bench_organizer"
PAYOUT_QUEUE = "stripe-events-queue"
CHANGES_TOPIC, AUDIT_SUBSCRIPTION = "transaction-changes", "audit"
EVENT_MIX = ("refund.created",) * 6 + ("charge.dispute.created",) * 3 + ("payout.paid",)
T0 = 1_780_000_000
SETTLE_TIMEOUT_SECONDS = 1500.0
SETTLE_STALL_SECONDS = 300.0
SETTLE_POLL_SECONDS = 5.0
REFUND_AMOUNT_CENTS = 100  # each planned refund: USD 1.00 of a USD 100.00 order
NOTE = (
    "The Cosmos DB stand-in, the Service Bus emulator, the webhook service and this load generator ran "
    f"on this machine and shared its {os.cpu_count()} cores (a shared machine with other work running)."
)


@dataclass(frozen=True, slots=True)
class Planned:
    """One delivery: its event, the object whose effect proves it was applied, and the signed body."""

    event_id: str
    kind: str
    object_id: str
    transaction_id: str | None
    body: bytes
    secret: str


def plan_events(count: int, *, transactions: int) -> list[Planned]:
    """Refunds, disputes and payouts spread over the transactions; half of them Connect events."""
    planned: list[Planned] = []
    for n in range(count):
        kind = EVENT_MIX[n % len(EVENT_MIX)]
        connect = n % 2 == 1
        tx = n % transactions
        payment = {"charge": f"ch_bench{tx:06d}", "payment_intent": f"pi_bench{tx:06d}", "currency": "usd"}
        if kind == "refund.created":
            obj: dict[str, Any] = {
                "id": f"re_bench{n:07d}",
                "object": "refund",
                "amount": REFUND_AMOUNT_CENTS,
                **payment,
            }
            obj["status"] = "succeeded"
        elif kind == "charge.dispute.created":
            obj = {"id": f"dp_bench{n:07d}", "object": "dispute", "amount": 500, **payment}
            obj.update(status="needs_response", reason="fraudulent")
        else:
            obj = {"id": f"po_bench{n:07d}", "object": "payout", "status": "paid", "amount": 9000}
            obj.update(arrival_date=T0 + 86_400, automatic=True)
        event_id = f"evt_bench{uuid.uuid4().hex[:16]}"
        event: dict[str, Any] = {
            "id": event_id,
            "object": "event",
            "api_version": "2020-08-27",
            "created": T0 + n // 10,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
            **({"account": CONNECTED_ACCOUNT} if connect else {}),
        }
        planned.append(
            Planned(
                event_id=event_id,
                kind=kind,
                object_id=obj["id"],
                transaction_id=None if kind.startswith("payout.") else f"tx-bench-{tx:06d}",
                body=json.dumps(event).encode(),
                secret=CONNECT_SECRET if connect else PLATFORM_SECRET,
            )
        )
    return planned


async def seed_transactions(database: DatabaseProxy, count: int, *, indexed: bool = True) -> None:
    """Transactions paid by the charges the events name, spread over ten events (partitions).

    ``indexed``: each is also listed under its PaymentIntent and charge ids, as the enricher lists a
    payment it enriched (``otcommon.payment_transactions``); without, every lookup is the query.
    """
    container = database.get_container_client("transactions")
    index = database.get_container_client(PAYMENT_TRANSACTIONS_CONTAINER)
    limit = asyncio.Semaphore(16)

    async def create(tx: int) -> None:
        async with limit:
            document = await container.create_item(
                {
                    "id": f"tx-bench-{tx:06d}",
                    "eventId": f"ev-bench-{tx % 10}",
                    "PaymentID": f"pi_bench{tx:06d}",
                    "TotalAmount": 100.0,
                    "IsRefunded": False,
                    "IsDisputed": False,
                }
            )
            if indexed:
                for stripe_id in (f"pi_bench{tx:06d}", f"ch_bench{tx:06d}"):
                    await index.upsert_item(payment_transactions_document(stripe_id, [ref_of(document)]))

    await asyncio.gather(*(create(tx) for tx in range(count)))


@contextlib.asynccontextmanager
async def webhook_service(env: dict[str, str]) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``python -m webhooks serve`` on a free port, ready; SIGTERM at the end."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhooks", "serve", env={**env, "OT_WEBHOOKS_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(120):
            while True:
                if process.returncode is not None:
                    raise RuntimeError("the webhook service exited before it was ready")
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:  # noqa: PLR2004
                            break
                await asyncio.sleep(0.2)
        yield process, base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()


async def fire(url: str, planned: list[Planned], *, rate: float, sent_at: dict[str, float]) -> dict[str, Any]:
    """Send every delivery at its scheduled time; latency of each answer, and every non-2xx or error.

    ``sent_at`` gets each delivery's wall-clock send time (the service's clock is this machine's too).
    """
    signed = [
        (p.body, stripe.WebhookSignature.generate_signature_header(p.body.decode(), p.secret))
        for p in planned
    ]
    latencies: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5

        async def deliver(n: int) -> None:
            body, header = signed[n]
            scheduled = start + n / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            sent = loop.time()
            sent_at[planned[n].event_id] = time.time()
            lags.append(sent - scheduled)
            headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:  # noqa: PLR2004
                        errors[f"http {response.status}"] += 1
                        return
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                return
            latencies.append(loop.time() - sent)

        began = time.perf_counter()
        await asyncio.gather(*(deliver(n) for n in range(len(planned))))
        seconds = time.perf_counter() - began - 0.5
    return {
        "sent": len(planned),
        "seconds": round(seconds, 2),
        "achieved_rate": round(len(planned) / seconds, 1),
        "acknowledged": len(latencies),
        "errors": dict(errors),
        "latency_ms": distribution(latencies),
        "send_lag_ms": distribution(lags),
    }


def distribution(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of durations, in milliseconds."""
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50": round(pick(0.50), 2),
        "p90": round(pick(0.90), 2),
        "p99": round(pick(0.99), 2),
        "max": round(ordered[-1] * 1000, 2),
        "mean": round(statistics.fmean(ordered) * 1000, 2),
    }


async def settled_records(database: DatabaseProxy, expected: int) -> tuple[list[dict[str, Any]], bool]:
    """Every event record, once none is ``received`` any more; False when the wait gave up first.

    It gives up after ``SETTLE_TIMEOUT_SECONDS``, or when no event was applied for
    ``SETTLE_STALL_SECONDS``: the effects are then checked as they stand, the events still waiting
    counted as not applied, rather than the run ending without a report.
    """
    container = database.get_container_client("webhook-journal")
    query = "SELECT c.id, c.state, c.attempts, c.receivedAt, c.settledAt FROM c"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_SECONDS
    last_progress, last_waiting = loop.time(), -1
    while True:
        records = [row async for row in container.query_items(query)]
        waiting = sum(row["state"] == "received" for row in records) + max(0, expected - len(records))
        if not waiting:
            return records, True
        now = loop.time()
        if waiting != last_waiting:
            last_progress, last_waiting = now, waiting
        if now > deadline or now - last_progress > SETTLE_STALL_SECONDS:
            progress(f"gave up waiting: {waiting} events not applied")
            return records, False
        progress(f"{len(records)} recorded, {waiting} not applied yet")
        await asyncio.sleep(SETTLE_POLL_SECONDS)


async def drain(connection: str, *, queue: str | None = None, topic: str | None = None) -> Counter[str]:
    """Messages per Stripe event id (the correlation id), received and deleted."""
    counts: Counter[str] = Counter()
    async with ServiceBusClient.from_connection_string(connection) as client:
        mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        receiver = (
            client.get_queue_receiver(queue, receive_mode=mode)
            if queue
            else client.get_subscription_receiver(str(topic), AUDIT_SUBSCRIPTION, receive_mode=mode)
        )
        async with receiver:
            while batch := await receiver.receive_messages(max_message_count=500, max_wait_time=5):
                counts.update(str(decode_service_bus_message(m).correlation_id) for m in batch)
    return counts


@dataclass
class EffectCounts:
    """What the check found, event by event."""

    lost: list[str]
    applied_twice: list[str]
    misapplied: list[str]
    """Events whose refund or dispute sits on a transaction the event is not about."""


def holders_of(stored: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """For each refund or dispute id, the transactions holding it."""
    held: dict[str, list[str]] = {}
    for transaction_id, row in stored.items():
        for field in ("stripeRefunds", "stripeDisputes"):
            for object_id in row.get(field) or {}:
                held.setdefault(object_id, []).append(transaction_id)
    return held


def count_effects(
    planned: list[Planned],
    stored: dict[str, dict[str, Any]],
    *,
    handed_over: Counter[str],
    announced: Counter[str],
) -> EffectCounts:
    """Each refund and dispute on its transaction (only there), written by its event and announced once;
    each payout handed to the enricher's queue once."""
    held = holders_of(stored)
    found = EffectCounts(lost=[], applied_twice=[], misapplied=[])
    for p in planned:
        if p.transaction_id is None:
            count = handed_over[p.event_id]
        else:
            field = "stripeRefunds" if p.kind.startswith("refund.") else "stripeDisputes"
            entry = (stored.get(p.transaction_id, {}).get(field) or {}).get(p.object_id)
            count = announced[p.event_id] if entry is not None and entry["eventId"] == p.event_id else 0
            if set(held.get(p.object_id, ())) - {p.transaction_id}:
                found.misapplied.append(p.event_id)
        if count == 0:
            found.lost.append(p.event_id)
        elif count > 1:
            found.applied_twice.append(p.event_id)
    return found


def refund_sum_mismatches(planned: list[Planned], stored: dict[str, dict[str, Any]]) -> list[str]:
    """Transactions whose refunded amount is not one refund's amount per refund event about them.

    The derived field counts each refund once, so a refund counted twice or missed shows here too.
    """
    expected: Counter[str] = Counter()
    for p in planned:
        if p.kind.startswith("refund.") and p.transaction_id is not None:
            expected[p.transaction_id] += REFUND_AMOUNT_CENTS
    return [
        transaction_id
        for transaction_id, cents in expected.items()
        if round(float(stored.get(transaction_id, {}).get("stripeRefundedAmount") or 0) * 100) != cents
    ]


async def check_effects(
    database: DatabaseProxy, servicebus: str, planned: list[Planned], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Lost, applied-twice and misapplied events, from Cosmos DB and the bus."""
    container = database.get_container_client("transactions")
    stored = {row["id"]: row async for row in container.query_items("SELECT * FROM c")}
    handed_over = await drain(servicebus, queue=PAYOUT_QUEUE)
    announced = await drain(servicebus, topic=CHANGES_TOPIC)
    found = count_effects(planned, stored, handed_over=handed_over, announced=announced)
    sums = refund_sum_mismatches(planned, stored)
    planned_ids = {p.event_id for p in planned}
    states = Counter(row["state"] for row in records)
    apply_lag = [
        (datetime.fromisoformat(row["settledAt"]) - datetime.fromisoformat(row["receivedAt"])).total_seconds()
        for row in records
        if row.get("settledAt")
    ]
    return {
        "checked": True,
        "events": len(planned),
        "recorded": len(records),
        "recorded_twice": len(records) - len({row["id"] for row in records}),
        "states": dict(states),
        "retried_attempts": sum(int(row.get("attempts") or 0) for row in records),
        "lost": len(found.lost),
        "applied_twice": len(found.applied_twice),
        "misapplied": len(found.misapplied),
        "refund_sum_mismatches": len(sums),
        "unplanned_messages": sum(
            (handed_over + announced)[key] for key in (handed_over + announced).keys() - planned_ids
        ),
        "lost_examples": found.lost[:5],
        "applied_twice_examples": found.applied_twice[:5],
        "misapplied_examples": found.misapplied[:5],
        "refund_sum_mismatch_examples": sums[:5],
        "received_to_applied_ms": distribution(apply_lag),
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The live child processes of a process (the server processes ``serve`` starts)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text(encoding="ascii").split()]
    return found


def is_apply_process(pid: int) -> bool:
    """Whether a server process only applies (``serve`` gives it the pipes to read)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return any(each.startswith(b"OT_WEBHOOKS_APPLY_FROM_FDS=") for each in environ)


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU of several processes so far."""
    return sum(cpu_seconds(pid) for pid in pids)


def effect_times(
    planned: list[Planned], records: list[dict[str, Any]], sent_at: dict[str, float]
) -> dict[str, Any]:
    """From each refund's and dispute's delivery to its record settled, and from the last send to the last.

    An event's record is settled after its change is written to the transaction (and announced), so
    the time to settled is an upper bound of the time until the change is visible in Cosmos DB.
    """
    settled = {
        row["id"]: datetime.fromisoformat(row["settledAt"]).timestamp()
        for row in records
        if row.get("settledAt")
    }
    to_effect = [
        settled[p.event_id] - sent_at[p.event_id]
        for p in planned
        if p.transaction_id is not None and p.event_id in settled and p.event_id in sent_at
    ]
    last_settled = max(settled.values(), default=None)
    return {
        "refund_or_dispute_delivery_to_settled_ms": distribution(to_effect),
        "within_one_second": (
            round(sum(t <= 1.0 for t in to_effect) / len(to_effect), 4) if to_effect else None
        ),
        "last_send_to_last_settled_seconds": (
            round(last_settled - max(sent_at.values()), 2) if last_settled and sent_at else None
        ),
    }


async def measure(args: argparse.Namespace, *, cosmos: ManagedProcess, servicebus: Any) -> dict[str, Any]:
    """Seed, start the service, fire, wait, check."""
    database_name = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    connection = CosmosConnection(
        endpoint=connection_for(cosmos, database=database_name).endpoint,
        key=SecretStr(EMULATOR_KEY),
        database=database_name,
    )
    async with create_cosmos_client(connection) as client:
        await provision(client, database=database_name, topology=DEFAULT_TOPOLOGY)
        database = client.get_database_client(database_name)
        progress(f"storing {args.transactions} transactions")
        await seed_transactions(database, args.transactions, indexed=not args.unindexed)
        planned = plan_events(int(args.rate * args.seconds), transactions=args.transactions)
        env = {
            **os.environ,
            "OT_COSMOS_CONNECTION_STRING": connection_string(connection.endpoint),
            "OT_COSMOS_DATABASE": database_name,
            "OT_SERVICEBUS_CONNECTION_STRING": servicebus.connection_string,
            "OT_WEBHOOKS_PLATFORM_SECRETS": PLATFORM_SECRET,
            "OT_WEBHOOKS_CONNECT_SECRETS": CONNECT_SECRET,
            "OT_LOG_FORMAT": "json",
            "OTEL_SERVICE_NAME": "webhooks",
            **({"OT_WEBHOOKS_APPLY_WORKERS": str(args.apply_workers)} if args.apply_workers else {}),
            "OT_WEBHOOKS_PROCESSES": str(args.processes),
            "OT_WEBHOOKS_APPLY_PROCESSES": str(args.apply_processes),
            **(
                {"OT_WEBHOOKS_APPLY_NICENESS": str(args.apply_niceness)}
                if args.apply_niceness is not None
                else {}
            ),
        }
        progress("starting python -m webhooks serve")
        async with webhook_service(env) as (service, base):
            progress(f"sending {len(planned)} signed events at {args.rate}/s")
            children = children_of(service.pid)
            applying = [pid for pid in children if is_apply_process(pid)]
            peers = {
                "webhooks": [service.pid, *children],
                **({"webhooks_answering": sorted(set(children) - set(applying))} if applying else {}),
                **({"webhooks_applying": applying} if applying else {}),
                "cosmos": [cosmos.pid],
                "servicebus": [servicebus.process.pid],
                "load_generator": [os.getpid()],
            }
            cpu_before = {name: tree_cpu_seconds(pids) for name, pids in peers.items()}
            sent_at: dict[str, float] = {}
            load = await fire(f"{base}/api/webhooks/stripe", planned, rate=args.rate, sent_at=sent_at)
            cpu = {name: round(tree_cpu_seconds(pids) - cpu_before[name], 2) for name, pids in peers.items()}
            load["webhooks_processes"] = len(peers["webhooks"]) - (len(peers["webhooks"]) > 1)
            load["webhooks_apply_processes"] = len(applying)
            load["cpu_seconds_during_the_load"] = cpu
            # Per event sent, apply work done meanwhile included; and how many cores the service's
            # processes got: on a shared machine the scheduler's share, not the code, may limit it.
            load["webhooks_cpu_ms_per_event"] = round(cpu["webhooks"] * 1000 / len(planned), 2)
            load["webhooks_share_of_one_core"] = round(cpu["webhooks"] / load["seconds"], 2)
            load["meets_target"] = load["latency_ms"]["p99"] <= TARGET_P99_MS and not load["errors"]
            p99 = load["latency_ms"].get("p99")
            progress(f"acknowledged {load['acknowledged']}, p99 {p99} ms")
            effects: dict[str, Any] = {"checked": False}
            if not args.acknowledgement_only:
                progress("waiting until every event is applied")
                began = time.perf_counter()
                records, all_applied = await settled_records(database, len(planned))
                settle_seconds = time.perf_counter() - began
                # Answering and applying every event, however the machine's load spread it in time.
                total = {name: tree_cpu_seconds(pids) - cpu_before[name] for name, pids in peers.items()}
                load["cpu_ms_per_event_until_all_applied"] = {
                    name: round(seconds * 1000 / len(planned), 2) for name, seconds in total.items()
                }
        if not args.acknowledgement_only:
            progress("checking every effect in Cosmos DB and on the bus")
            effects = await check_effects(database, servicebus.connection_string, planned, records)
            effects.update(effect_times(planned, records, sent_at))
            effects["all_applied"] = all_applied
            effects["seconds_after_the_last_send_until_all_applied"] = round(settle_seconds, 1)
        await client.delete_database(database_name)
    return {
        "rate_per_second": args.rate,
        "seconds": args.seconds,
        "transactions": args.transactions,
        "apply_workers": args.apply_workers or "default",
        "processes": args.processes,
        "apply_processes": args.apply_processes,
        "apply_niceness": "default" if args.apply_niceness is None else args.apply_niceness,
        "payments_indexed": not args.unindexed,
        "event_mix": dict(Counter(EVENT_MIX)),
        "acknowledgement": load,
        "effects": effects,
        "meets_target": load["meets_target"]
        and effects.get("lost") == 0
        and effects.get("applied_twice") == 0
        and effects.get("misapplied") == 0
        and effects.get("refund_sum_mismatches") == 0,
    }


def progress(step: str) -> None:
    """One line on how far the run is."""
    print(f"bench webhooks: {step}", flush=True)


def summary(results: dict[str, Any]) -> list[str]:
    """The figures for a person."""
    run, lines = results["run"], []
    ack, effects = run["acknowledgement"], run["effects"]
    latency = ack["latency_ms"]
    verdict = "met" if run["meets_target"] else "NOT met"
    lines.append(
        f"{ack['sent']} signed events at {ack['achieved_rate']}/s for {ack['seconds']} s: "
        f"acknowledgement p50 {latency['p50']} ms, p99 {latency['p99']} ms, max {latency['max']} ms; "
        f"errors {ack['errors'] or 0}"
    )
    if effects["checked"]:
        waited = effects["seconds_after_the_last_send_until_all_applied"]
        lines.append(
            f"effects: {effects['lost']} lost, {effects['applied_twice']} applied twice, "
            f"{effects['misapplied']} on a wrong transaction, "
            f"{effects['refund_sum_mismatches']} refunded amounts wrong; states {effects['states']}; "
            + (
                f"all applied {waited} s after the last send"
                if effects["all_applied"]
                else f"gave up after {waited} s"
            )
        )
        to_effect = effects["refund_or_dispute_delivery_to_settled_ms"]
        lines.append(
            "refund or dispute delivered -> settled (its change written before): "
            f"p50 {to_effect.get('p50')} ms, "
            f"p99 {to_effect.get('p99')} ms, max {to_effect.get('max')} ms; within 1 s: "
            f"{effects['within_one_second']}; last send -> last settled "
            f"{effects['last_send_to_last_settled_seconds']} s"
        )
    else:
        lines.append("effects: not checked (--acknowledgement-only)")
    lines.append(f"target p99 <= {TARGET_P99_MS:.0f} ms, 0 lost, 0 applied twice: {verdict}")
    lines.append(
        f"CPU during the load: {ack['cpu_seconds_during_the_load']}; webhooks "
        f"{ack['webhooks_cpu_ms_per_event']} ms per event, {ack['webhooks_share_of_one_core']} cores "
        f"({ack['webhooks_processes']} processes)"
    )
    if "cpu_ms_per_event_until_all_applied" in ack:
        lines.append(f"CPU ms per event, answered and applied: {ack['cpu_ms_per_event_until_all_applied']}")
    lines.append(results["note"])
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/webhooks.json"))
    parser.add_argument("--rate", type=float, default=200.0, help="signed events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--transactions", type=int, default=2000, help="transactions the events act on")
    parser.add_argument("--apply-workers", type=int, default=None, help="the service's apply workers")
    parser.add_argument(
        "--processes", type=int, default=2, help="the service's server processes (OT_WEBHOOKS_PROCESSES)"
    )
    parser.add_argument(
        "--apply-processes",
        type=int,
        default=1,
        help="processes that only apply, beside the answering ones (OT_WEBHOOKS_APPLY_PROCESSES)",
    )
    parser.add_argument(
        "--apply-niceness",
        type=int,
        default=None,
        help="how much lower the apply processes' CPU priority is (OT_WEBHOOKS_APPLY_NICENESS)",
    )
    parser.add_argument(
        "--acknowledgement-only",
        action="store_true",
        help="measure the answers; do not wait for every effect",
    )
    parser.add_argument(
        "--unindexed",
        action="store_true",
        help="store no transactions-of: index documents: every event's transactions are found by the query",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 s")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 10.0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    configure_logging(level="WARNING", fmt="console", service_name="webhooks-bench")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "note": NOTE,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    cosmos = start_cosmos(timeout_seconds=60.0)
    try:
        with running_emulator(project_topology(), ready_timeout=60.0) as emulator:
            results["run"] = asyncio.run(measure(args, cosmos=cosmos, servicebus=emulator))
            results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        cosmos.stop()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(summary(results)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
