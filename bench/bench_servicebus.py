"""Benchmark the Service Bus emulator with the async SDK: throughput of send -> receive -> complete at
concurrency 1 and 16, and the latency of one send-to-receive hop.

    uv run python bench/bench_servicebus.py --out bench/results/servicebus.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

from devstack.servicebus.testing import running_emulator

QUEUE = "bench"
TARGET_MESSAGES_PER_SECOND = 500
WARM_UP_SAMPLES = 10  # the first hops include lazy set-up in the client


def _write_topology(directory: Path) -> Path:
    queue = {"Name": QUEUE, "Properties": {"LockDuration": "PT1M", "MaxDeliveryCount": 10}}
    document = {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": [queue], "Topics": []}]}}
    path = directory / "Config.bench.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


async def _send(sender: ServiceBusSender, count: int) -> None:
    for index in range(count):
        await sender.send_messages(ServiceBusMessage(f"message {index}"))


async def _receive_and_complete(receiver: ServiceBusReceiver, remaining: list[int], deadline: float) -> None:
    while remaining[0] > 0 and time.monotonic() < deadline:
        messages = await receiver.receive_messages(max_message_count=20, max_wait_time=0.5)
        for message in messages:
            await receiver.complete_message(message)
        remaining[0] -= len(messages)


def _process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used, from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_throughput(
    connection_string: str, *, concurrency: int, messages: int, emulator_pid: int
) -> dict[str, Any]:
    """Send `messages` one by one from `concurrency` senders while as many receivers complete them.

    Besides the rate, report the CPU time the emulator and the SDK client spent per 1000 messages: on a
    shared machine the rate moves with other load, the CPU cost per message much less.
    """
    per_sender = messages // concurrency
    total = per_sender * concurrency
    remaining = [total]
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        AsyncExitStack() as stack,
    ):
        # Links are opened before the clock starts: the figure is about messaging, not connection set-up.
        senders = [
            await stack.enter_async_context(client.get_queue_sender(QUEUE)) for _ in range(concurrency)
        ]
        receivers = [
            await stack.enter_async_context(client.get_queue_receiver(QUEUE, prefetch_count=20))
            for _ in range(concurrency)
        ]
        deadline = time.monotonic() + 300
        emulator_cpu, client_cpu = _process_cpu_seconds(emulator_pid), _own_cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(
            *(_send(sender, per_sender) for sender in senders),
            *(_receive_and_complete(receiver, remaining, deadline) for receiver in receivers),
        )
        elapsed = time.perf_counter() - started
        emulator_cpu_after, client_cpu_after = _process_cpu_seconds(emulator_pid), _own_cpu_seconds()
    completed = total - max(remaining[0], 0)
    per_thousand = 1000 / max(completed, 1)
    emulator_cost = (
        round((emulator_cpu_after - emulator_cpu) * per_thousand, 3)
        if emulator_cpu is not None and emulator_cpu_after is not None
        else None
    )
    return {
        "concurrency": concurrency,
        "messages": completed,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(completed / elapsed, 1),
        "emulator_cpu_seconds_per_1000": emulator_cost,
        "client_cpu_seconds_per_1000": round((client_cpu_after - client_cpu) * per_thousand, 3),
    }


async def measure_latency(connection_string: str, *, samples: int) -> dict[str, Any]:
    """Time from `send_messages` being called to the receiver holding the message, one message at a time."""
    latencies: list[float] = []
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_sender(QUEUE) as sender,
        client.get_queue_receiver(QUEUE) as receiver,
    ):
        for index in range(WARM_UP_SAMPLES + samples):
            started = time.perf_counter()
            await sender.send_messages(ServiceBusMessage(f"ping {index}"))
            messages = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            arrived = time.perf_counter()
            for message in messages:
                await receiver.complete_message(message)
            if index >= WARM_UP_SAMPLES and messages:
                latencies.append((arrived - started) * 1000)
    ordered = sorted(latencies)
    return {
        "samples": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


async def run(connection_string: str, *, messages: int, samples: int, emulator_pid: int) -> dict[str, Any]:
    """Run every measurement against one emulator."""
    single = await measure_throughput(
        connection_string, concurrency=1, messages=messages // 4, emulator_pid=emulator_pid
    )
    parallel = await measure_throughput(
        connection_string, concurrency=16, messages=messages, emulator_pid=emulator_pid
    )
    latency = await measure_latency(connection_string, samples=samples)
    return {
        "throughput": [single, parallel],
        "send_to_receive_latency": latency,
        "target_messages_per_second_at_16": TARGET_MESSAGES_PER_SECOND,
        "meets_target": parallel["messages_per_second"] >= TARGET_MESSAGES_PER_SECOND,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/servicebus.json"))
    parser.add_argument("--messages", type=int, default=4000, help="messages in the concurrency-16 run")
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--durable", action="store_true", help="run the emulator with a SQLite data file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        data_file = Path(directory) / "bench.sqlite" if args.durable else None
        with running_emulator(_write_topology(Path(directory)), data_file=data_file) as emulator:
            measured = run(
                emulator.connection_string,
                messages=args.messages,
                samples=args.samples,
                emulator_pid=emulator.process.pid,
            )
            results = asyncio.run(measured)
    results["durable"] = args.durable
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for row in results["throughput"]:
        print(f"concurrency {row['concurrency']:>2}: {row['messages_per_second']:>8.1f} msg/s "
              f"({row['messages']} messages in {row['seconds']} s)")  # fmt: skip
        print(f"    CPU s per 1000 messages: emulator {row['emulator_cpu_seconds_per_1000']}, "
              f"client {row['client_cpu_seconds_per_1000']}")  # fmt: skip
    latency = results["send_to_receive_latency"]
    print(f"send->receive latency: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
    verdict = "met" if results["meets_target"] else "NOT met"
    print(f"target >= {TARGET_MESSAGES_PER_SECOND} msg/s at concurrency 16: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
