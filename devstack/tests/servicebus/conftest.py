"""Fixtures for the Service Bus emulator conformance suite: one emulator process per test module."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from devstack.servicebus.testing import RunningEmulator, running_emulator

TEST_CONFIG = Path(__file__).parent / "Config.test.json"

Receive = Callable[..., Awaitable[list[ServiceBusReceivedMessage]]]


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(TEST_CONFIG) as running:
        yield running


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(
        emulator.connection_string, retry_total=1
    ) as sb_client:
        yield sb_client


async def _receive(
    receiver: ServiceBusReceiver, count: int, *, within: float = 5.0
) -> list[ServiceBusReceivedMessage]:
    """Receive until `count` messages arrived or `within` seconds passed (whichever is first)."""
    received: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + within
    while len(received) < count and (remaining := deadline - time.monotonic()) > 0:
        batch = await receiver.receive_messages(
            max_message_count=count - len(received), max_wait_time=min(remaining, 1.0)
        )
        received.extend(batch)
    return received


@pytest.fixture
def receive() -> Receive:
    return _receive
