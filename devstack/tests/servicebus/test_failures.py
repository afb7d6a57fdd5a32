"""Conformance: failures surface as the SDK's typed errors at once, and bad input never stops the server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusAuthenticationError

from devstack.servicebus.testing import connection_string

pytestmark = pytest.mark.integration


async def test_wrong_key_raises_authentication_error_quickly(emulator):
    wrong = connection_string(
        host=emulator.host, port=emulator.port, key_name=emulator.key_name, key="not-the-key"
    )
    started = time.monotonic()
    async with ServiceBusClient.from_connection_string(wrong, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_sender("robust") as sender:
                await sender.send_messages(ServiceBusMessage("x"))
    assert time.monotonic() - started < 10


async def test_unknown_key_name_raises_authentication_error(emulator):
    wrong = connection_string(
        host=emulator.host, port=emulator.port, key_name="SomeoneElse", key=emulator.key
    )
    async with ServiceBusClient.from_connection_string(wrong, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_receiver("robust") as receiver:
                await receiver.receive_messages(max_wait_time=1)


async def test_unknown_entity_raises_not_found_at_once(client):
    started = time.monotonic()
    with pytest.raises(MessagingEntityNotFoundError):
        async with client.get_queue_sender("no-such-queue") as sender:
            await sender.send_messages(ServiceBusMessage("x"))
    with pytest.raises(MessagingEntityNotFoundError):
        async with client.get_subscription_receiver("events", "no-such-subscription") as receiver:
            await receiver.receive_messages(max_wait_time=1)
    assert time.monotonic() - started < 5


async def test_garbage_on_the_socket_does_not_stop_the_server(emulator, client, receive):
    def send_garbage(payload: bytes) -> None:
        with socket.create_connection((emulator.host, emulator.port), timeout=2) as raw:
            raw.sendall(payload)
            with contextlib.suppress(OSError):  # the server may reset the connection; that is the point
                raw.recv(1024)

    await asyncio.to_thread(send_garbage, b"GET / HTTP/1.1\r\n\r\n")
    await asyncio.to_thread(send_garbage, b"AMQP\x00\x01\x00\x00" + b"\xff" * 64)
    await asyncio.to_thread(send_garbage, b"AMQP\x03\x01\x00\x00\x00\x00\x00\x10\x02\x01\x00\x00\x00\x53\x41")
    assert emulator.process.poll() is None
    async with client.get_queue_sender("robust") as sender:
        await sender.send_messages(ServiceBusMessage("still alive"))
    async with client.get_queue_receiver("robust") as receiver:
        [message] = await receive(receiver, 1)
        assert str(message) == "still alive"
        await receiver.complete_message(message)


_SYNC_RECEIVER = """
import sys, time
from azure.servicebus import ServiceBusClient
with ServiceBusClient.from_connection_string(sys.argv[1]) as client:
    with client.get_queue_receiver("disconnect") as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=10)
        print(f"got {messages[0].sequence_number}", flush=True)
        time.sleep(60)
"""


async def test_killed_sync_client_releases_its_lock_at_once(emulator, client, receive):
    async with client.get_queue_sender("disconnect") as sender:
        await sender.send_messages(ServiceBusMessage("held by a crashed worker"))
    # The sync SDK, in a process that is killed while holding the lock (no detach, no close).
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SYNC_RECEIVER, emulator.connection_string, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), timeout=20)
        assert line.startswith(b"got ")
    finally:
        worker.kill()
        await worker.wait()
    async with client.get_queue_receiver("disconnect") as receiver:
        [again] = await receive(
            receiver, 1, within=5
        )  # the lock is 30 s: this only passes if it was released
        assert str(again) == "held by a crashed worker"
        assert again.sequence_number == int(line.split()[1])
        await receiver.complete_message(again)
