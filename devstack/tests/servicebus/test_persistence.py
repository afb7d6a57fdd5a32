"""Conformance: with a data file nothing is lost across a restart, and clients reconnect by themselves."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from devstack.servicebus.testing import free_port, running_emulator

pytestmark = pytest.mark.integration

TEST_CONFIG = Path(__file__).parent / "Config.test.json"


async def test_restart_with_data_file_loses_nothing(tmp_path, receive):
    data_file = tmp_path / "servicebus.sqlite"
    port = free_port()
    far_future = datetime.now(UTC) + timedelta(hours=1)
    with running_emulator(TEST_CONFIG, data_file=data_file, port=port) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            async with client.get_queue_sender("persist") as sender:
                await sender.send_messages(
                    [
                        ServiceBusMessage(name, message_id=name)
                        for name in ("active", "deferred", "dead", "locked")
                    ]
                )
                [scheduled_number] = await sender.schedule_messages(
                    ServiceBusMessage("scheduled"), far_future
                )
            async with client.get_queue_receiver("persist") as receiver:
                received = {str(m): m for m in await receive(receiver, 4)}
                await receiver.defer_message(received["deferred"])
                await receiver.dead_letter_message(received["dead"], reason="Broken", error_description="why")
                deferred_number = received["deferred"].sequence_number
            # "active" and "locked" were received but never settled: both must survive as available messages.

    with running_emulator(TEST_CONFIG, data_file=data_file, port=port) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            async with client.get_queue_sender("persist") as sender:
                await sender.send_messages(ServiceBusMessage("duplicate", message_id="active"))
            async with client.get_queue_receiver("persist") as receiver:
                peeked = await receiver.peek_messages(max_message_count=10, sequence_number=1)
                assert sorted(str(m) for m in peeked) == ["active", "deferred", "locked", "scheduled"]
                assert scheduled_number in {m.sequence_number for m in peeked}
                available = await receive(receiver, 3, within=2)
                assert sorted(str(m) for m in available) == ["active", "locked"]
                for message in available:
                    assert message.delivery_count == 1  # the unsettled delivery before the restart counts
                    await receiver.complete_message(message)
                [deferred] = await receiver.receive_deferred_messages([deferred_number])
                assert str(deferred) == "deferred"
                await receiver.complete_message(deferred)
            async with client.get_queue_receiver("persist", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
                [dead_message] = await receive(dead, 1)
                assert str(dead_message) == "dead"
                assert dead_message.dead_letter_reason == "Broken"
                await dead.complete_message(dead_message)
            async with client.get_queue_sender("persist") as sender:
                await sender.cancel_scheduled_messages(scheduled_number)


# The SDK does not close the socket of a connection the server dropped; collect it here, inside this filter,
# so the leak it reports is not blamed on a later test.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_sender_and_receiver_reconnect_after_restart(receive):
    port = free_port()
    with running_emulator(TEST_CONFIG, port=port) as emulator:
        client = ServiceBusClient.from_connection_string(
            emulator.connection_string, retry_total=5, retry_backoff_factor=0.2
        )
        sender = client.get_queue_sender("reconnect")
        receiver = client.get_queue_receiver("reconnect")
        await sender.send_messages(ServiceBusMessage("before"))
        [before] = await receive(receiver, 1)
        await receiver.complete_message(before)
    try:
        with running_emulator(TEST_CONFIG, port=port):
            await sender.send_messages(ServiceBusMessage("after"))
            # One long wait: reopening the link (connection, put-token, attach) is bounded by max_wait_time.
            [after] = await receiver.receive_messages(max_wait_time=10)
            assert str(after) == "after"
            await receiver.complete_message(after)
    finally:
        await receiver.close()
        await sender.close()
        await client.close()
        gc.collect()


async def test_acknowledged_messages_survive_a_killed_emulator(tmp_path, receive):
    data_file = tmp_path / "servicebus.sqlite"
    port = free_port()
    with running_emulator(TEST_CONFIG, data_file=data_file, port=port) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            async with client.get_queue_sender("persist") as sender:
                await sender.send_messages([ServiceBusMessage(f"acked-{index}") for index in range(3)])
                await sender.send_messages(ServiceBusMessage("acked-3"))
            emulator.process.kill()  # no clean shutdown: only what was committed before the ack remains
            emulator.process.wait(timeout=5)
    with running_emulator(TEST_CONFIG, data_file=data_file, port=port) as emulator:
        async with (
            ServiceBusClient.from_connection_string(emulator.connection_string) as client,
            client.get_queue_receiver("persist") as receiver,
        ):
            messages = await receive(receiver, 4)
            assert [str(m) for m in messages] == [f"acked-{index}" for index in range(4)]
            for message in messages:
                await receiver.complete_message(message)
