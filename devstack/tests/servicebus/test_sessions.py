"""Conformance: session-enabled queues (ordered per session, session locks and state)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

pytestmark = pytest.mark.integration


async def test_session_receiver_gets_its_session_in_order(client, receive):
    async with client.get_queue_sender("sessions") as sender:
        await sender.send_messages(
            [
                ServiceBusMessage(f"{session}-{index}", session_id=session)
                for index in range(3)
                for session in "ab"
            ]
        )
    async with client.get_queue_receiver("sessions", session_id="b") as receiver:
        messages = await receive(receiver, 3)
        assert [str(m) for m in messages] == ["b-0", "b-1", "b-2"]
        assert {m.session_id for m in messages} == {"b"}
        for message in messages:
            await receiver.complete_message(message)
    async with client.get_queue_receiver("sessions", session_id=NEXT_AVAILABLE_SESSION) as receiver:
        assert receiver.session.session_id == "a"
        messages = await receive(receiver, 3)
        assert [str(m) for m in messages] == ["a-0", "a-1", "a-2"]
        for message in messages:
            await receiver.complete_message(message)


async def test_abandoned_session_message_comes_back_first(client, receive):
    async with client.get_queue_sender("sessions") as sender:
        await sender.send_messages([ServiceBusMessage(f"c-{index}", session_id="c") for index in range(2)])
    async with client.get_queue_receiver("sessions", session_id="c", prefetch_count=0) as receiver:
        [first] = await receive(receiver, 1)
        assert str(first) == "c-0"
        await receiver.abandon_message(first)
        [again] = await receive(receiver, 1)
        assert str(again) == "c-0"
        assert again.delivery_count == 1
        await receiver.complete_message(again)
        [second] = await receive(receiver, 1)
        assert str(second) == "c-1"
        await receiver.complete_message(second)


async def test_locked_session_cannot_be_taken_by_another_receiver(client):
    async with client.get_queue_sender("sessions") as sender:
        await sender.send_messages(ServiceBusMessage("d-0", session_id="d"))
    async with client.get_queue_receiver("sessions", session_id="d") as holder:
        with pytest.raises(SessionCannotBeLockedError):
            async with client.get_queue_receiver("sessions", session_id="d") as intruder:
                await intruder.receive_messages(max_wait_time=1)
        [message] = await holder.receive_messages(max_wait_time=3)
        await holder.complete_message(message)


async def test_session_state_and_lock_renewal(client):
    async with client.get_queue_receiver("session-state", session_id="order-42") as receiver:
        session = receiver.session
        assert await session.get_state() is None
        await session.set_state(b"step-2")
        assert await session.get_state() == b"step-2"
        before = session.locked_until_utc
        renewed = await session.renew_lock()
        assert renewed >= before
    async with client.get_queue_receiver("session-state", session_id="order-42") as receiver:
        assert await receiver.session.get_state() == b"step-2"


async def test_message_without_session_id_is_refused(client):
    async with client.get_queue_sender("sessions") as sender:
        with pytest.raises(ServiceBusError):
            await sender.send_messages(ServiceBusMessage("no session"))


async def test_expired_session_lock_releases_its_messages(client, receive):
    async with client.get_queue_sender("session-short") as sender:
        await sender.send_messages(ServiceBusMessage("slow", session_id="e"))
    async with client.get_queue_receiver("session-short", session_id="e") as receiver:
        [message] = await receive(receiver, 1)
        await asyncio.sleep(1.5)  # past the 1 s session lock, never renewed
        with pytest.raises(SessionLockLostError):
            await receiver.complete_message(message)
    async with client.get_queue_receiver("session-short", session_id="e") as receiver:
        [again] = await receive(receiver, 1)
        assert str(again) == "slow"
        assert again.delivery_count == 1
        await receiver.complete_message(again)


async def test_next_available_session_receiver_times_out_when_no_session_is_free(client):
    # The SDK asks the emulator to wait at most max_wait_time (`com.microsoft:timeout` on the attach); the
    # outer bound only turns a receiver left waiting forever into a failure instead of a hung suite.
    async with asyncio.timeout(20):
        with pytest.raises(OperationTimeoutError):
            async with client.get_queue_receiver(
                "session-idle", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
            ) as receiver:
                await receiver.receive_messages(max_wait_time=1)


async def test_list_sessions_includes_sessions_with_state_or_locked_messages(client):
    async with client.get_queue_sender("session-list") as sender:
        await sender.send_messages(ServiceBusMessage("work", session_id="with-message"))
    async with client.get_queue_receiver("session-list", session_id="with-state") as receiver:
        await receiver.session.set_state(b"checkpoint")
    listed = {session_id async for session_id in client.list_queue_sessions("session-list")}
    assert listed == {"with-message", "with-state"}
    async with client.get_queue_receiver("session-list", session_id="with-message") as receiver:
        [message] = await receiver.receive_messages(max_wait_time=5)
        # Its only message is locked, not gone: the session still counts as having active messages.
        listed = {session_id async for session_id in client.list_queue_sessions("session-list")}
        assert listed == {"with-message", "with-state"}
        await receiver.complete_message(message)
    listed = {session_id async for session_id in client.list_queue_sessions("session-list")}
    assert listed == {"with-state"}


async def test_list_sessions_by_state_updated_after(client):
    async with client.get_queue_sender("session-list") as sender:
        await sender.send_messages(ServiceBusMessage("work", session_id="messages-only"))
    async with client.get_queue_receiver("session-list", session_id="stateful") as receiver:
        await receiver.session.set_state(b"step-1")
    now = datetime.now(UTC)

    async def updated_after(cutoff: datetime) -> set[str]:
        return {
            session_id
            async for session_id in client.list_queue_sessions("session-list", state_updated_after=cutoff)
        }

    assert "stateful" in await updated_after(now - timedelta(hours=1))
    assert "messages-only" not in await updated_after(now - timedelta(hours=1))
    assert await updated_after(now + timedelta(hours=1)) == set()
    async with client.get_queue_receiver("session-list", session_id="messages-only") as receiver:
        [message] = await receiver.receive_messages(max_wait_time=5)
        await receiver.complete_message(message)


async def test_timed_out_next_available_receivers_never_open_without_a_session(client):
    # The refusal must not let a receiver look open, even for the moment before the detach arrives.
    async def open_once() -> str | None:
        try:
            async with client.get_queue_receiver(
                "session-idle", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
            ) as receiver:
                return receiver.session.session_id
        except OperationTimeoutError:
            return "timed out"

    async with asyncio.timeout(40):
        results = await asyncio.gather(*[open_once() for _ in range(5)])
    assert results == ["timed out"] * 5
