"""Conformance: the async SDK against the emulator, one test per behaviour a service relies on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import AutoLockRenewer
from azure.servicebus.exceptions import MessageLockLostError

pytestmark = pytest.mark.integration


async def test_send_receive_complete_round_trip(client, receive):
    async with client.get_queue_sender("basic") as sender:
        await sender.send_messages(
            ServiceBusMessage(
                "payload", message_id="m-1", correlation_id="c-1", subject="greeting",
                content_type="text/plain", application_properties={"count": 3, "flag": True, "name": "x"},
            )
        )  # fmt: skip
    async with client.get_queue_receiver("basic") as receiver:
        [message] = await receive(receiver, 1)
        assert str(message) == "payload"
        assert message.message_id == "m-1"
        assert message.correlation_id == "c-1"
        assert message.subject == "greeting"
        assert message.content_type == "text/plain"
        assert message.application_properties == {b"count": 3, b"flag": True, b"name": b"x"}
        assert message.sequence_number is not None
        assert message.delivery_count == 0
        assert message.locked_until_utc > datetime.now(UTC)
        assert abs((message.enqueued_time_utc - datetime.now(UTC)).total_seconds()) < 5
        await receiver.complete_message(message)
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_batch_send_delivers_each_message_in_order(client, receive):
    async with client.get_queue_sender("batch") as sender:
        batch = await sender.create_message_batch()
        for index in range(5):
            batch.add_message(ServiceBusMessage(f"item-{index}"))
        await sender.send_messages(batch)
        await sender.send_messages([ServiceBusMessage("list-0"), ServiceBusMessage("list-1")])
    async with client.get_queue_receiver("batch") as receiver:
        messages = await receive(receiver, 7)
        assert [str(m) for m in messages] == [f"item-{i}" for i in range(5)] + ["list-0", "list-1"]
        numbers = [m.sequence_number for m in messages]
        assert numbers == sorted(numbers)
        for message in messages:
            await receiver.complete_message(message)


async def test_topic_fans_out_to_subscriptions_by_filter(client, receive):
    async with client.get_topic_sender("events") as sender:
        await sender.send_messages(
            [
                ServiceBusMessage(
                    "refund", correlation_id="order-7", application_properties={"kind": "refund"}
                ),
                ServiceBusMessage(
                    "other-order", correlation_id="order-8", application_properties={"kind": "refund"}
                ),
                ServiceBusMessage(
                    "big", subject="payment", application_properties={"amount": 250, "currency": "EUR"}
                ),
                ServiceBusMessage(
                    "small", subject="payment", application_properties={"amount": 5, "currency": "EUR"}
                ),
                ServiceBusMessage(
                    "yen", subject="payment", application_properties={"amount": 900, "currency": "JPY"}
                ),
                ServiceBusMessage("eu", application_properties={"region": "eu"}),
                ServiceBusMessage("test-region", application_properties={"region": "test"}),
            ]
        )

    async def bodies(subscription, count):
        async with client.get_subscription_receiver("events", subscription) as receiver:
            messages = await receive(receiver, count, within=3)
            for message in messages:
                await receiver.complete_message(message)
            assert (
                await receiver.peek_messages(max_message_count=10, sequence_number=1) == []
            )  # nothing else matched
            return messages

    everything = await bodies("all", 7)
    assert [str(m) for m in everything] == [
        "refund",
        "other-order",
        "big",
        "small",
        "yen",
        "eu",
        "test-region",
    ]
    assert [str(m) for m in await bodies("refunds", 1)] == ["refund"]
    assert [str(m) for m in await bodies("big-payments", 1)] == ["big"]
    [tagged] = await bodies("tagged", 1)
    assert str(tagged) == "eu"
    assert tagged.application_properties[b"routed"] == b"yes"
    assert tagged.subject == "tagged-eu"


async def test_abandon_redelivers_with_incremented_delivery_count(client, receive):
    async with client.get_queue_sender("abandon") as sender:
        await sender.send_messages(ServiceBusMessage("retry me"))
    async with client.get_queue_receiver("abandon") as receiver:
        [first] = await receive(receiver, 1)
        await receiver.abandon_message(first)
        [second] = await receive(receiver, 1)
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == first.delivery_count + 1
        await receiver.complete_message(second)


async def test_dead_letter_with_reason_and_description(client, receive):
    async with client.get_queue_sender("deadletter") as sender:
        await sender.send_messages(ServiceBusMessage("poison", application_properties={"keep": "me"}))
    async with client.get_queue_receiver("deadletter") as receiver:
        [message] = await receive(receiver, 1)
        await receiver.dead_letter_message(
            message, reason="BadPayload", error_description="amount is negative"
        )
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []
    async with client.get_queue_receiver("deadletter", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
        [dead_message] = await receive(dead, 1)
        assert str(dead_message) == "poison"
        assert dead_message.dead_letter_reason == "BadPayload"
        assert dead_message.dead_letter_error_description == "amount is negative"
        assert dead_message.application_properties[b"keep"] == b"me"
        await dead.complete_message(dead_message)


async def test_defer_then_receive_deferred_by_sequence_number(client, receive):
    async with client.get_queue_sender("defer") as sender:
        await sender.send_messages(ServiceBusMessage("later"))
    async with client.get_queue_receiver("defer") as receiver:
        [message] = await receive(receiver, 1)
        await receiver.defer_message(message)
        assert await receive(receiver, 1, within=0.5) == []
        [still_there] = await receiver.peek_messages(
            max_message_count=10, sequence_number=1
        )  # deferred messages stay peekable
        assert still_there.sequence_number == message.sequence_number
        assert still_there.state == ServiceBusMessageState.DEFERRED
        [deferred] = await receiver.receive_deferred_messages([message.sequence_number])
        assert str(deferred) == "later"
        await receiver.complete_message(deferred)
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_renew_lock_keeps_message_locked(client, receive):
    async with client.get_queue_sender("renew") as sender:
        await sender.send_messages(ServiceBusMessage("slow work"))
    async with client.get_queue_receiver("renew") as receiver:
        [message] = await receive(receiver, 1)
        before = message.locked_until_utc
        await asyncio.sleep(1.2)
        renewed = await receiver.renew_message_lock(message)
        assert renewed > before
        await asyncio.sleep(1.2)  # past the original 2 s lock, within the renewed one
        await receiver.complete_message(message)
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_expired_lock_redelivers_and_late_settle_fails(client, receive):
    async with client.get_queue_sender("short-lock") as sender:
        await sender.send_messages(ServiceBusMessage("too slow"))
    async with client.get_queue_receiver("short-lock", prefetch_count=0) as receiver:
        [message] = await receive(receiver, 1)
        await asyncio.sleep(1.5)
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(message)
        [again] = await receive(receiver, 1)
        assert again.sequence_number == message.sequence_number
        assert again.delivery_count == 1
        await receiver.complete_message(again)


async def test_max_delivery_count_dead_letters(client, receive):
    async with client.get_queue_sender("max-delivery") as sender:
        await sender.send_messages(ServiceBusMessage("always fails"))
    async with client.get_queue_receiver("max-delivery") as receiver:
        for _ in range(2):
            [message] = await receive(receiver, 1)
            await receiver.abandon_message(message)
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []
    async with client.get_queue_receiver("max-delivery", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
        [dead_message] = await receive(dead, 1)
        assert dead_message.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert str(dead_message) == "always fails"
        await dead.complete_message(dead_message)


async def test_ttl_expiry_dead_letters_when_configured(client, receive):
    async with client.get_queue_sender("ttl-dlq") as sender:
        await sender.send_messages(ServiceBusMessage("stale"))
        await sender.send_messages(ServiceBusMessage("message ttl", time_to_live=timedelta(milliseconds=300)))
    await asyncio.sleep(1.5)
    async with client.get_queue_receiver("ttl-dlq") as receiver:
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []
    async with client.get_queue_receiver("ttl-dlq", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
        messages = await receive(dead, 2)
        assert sorted(str(m) for m in messages) == ["message ttl", "stale"]
        assert {m.dead_letter_reason for m in messages} == {"TTLExpiredException"}
        for message in messages:
            await dead.complete_message(message)


async def test_ttl_expiry_drops_without_dead_lettering(client, receive):
    async with client.get_queue_sender("ttl-drop") as sender:
        await sender.send_messages(ServiceBusMessage("gone"))
    await asyncio.sleep(1.5)
    async with client.get_queue_receiver("ttl-drop") as receiver:
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []
    async with client.get_queue_receiver("ttl-drop", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
        assert await dead.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_duplicate_message_ids_are_dropped_within_window(client, receive):
    async with client.get_queue_sender("dedup") as sender:
        await sender.send_messages(ServiceBusMessage("first", message_id="evt_1"))
        await sender.send_messages(ServiceBusMessage("again", message_id="evt_1"))
        await sender.send_messages(ServiceBusMessage("second", message_id="evt_2"))
    async with client.get_queue_receiver("dedup") as receiver:
        messages = await receive(receiver, 2)
        assert [str(m) for m in messages] == ["first", "second"]
        assert (
            await receiver.peek_messages(
                max_message_count=5, sequence_number=messages[-1].sequence_number + 1
            )
            == []
        )
        for message in messages:
            await receiver.complete_message(message)


async def test_schedule_and_cancel(client, receive):
    async with (
        client.get_queue_receiver("schedule") as receiver,
        client.get_queue_sender("schedule") as sender,
    ):
        at = datetime.now(UTC) + timedelta(seconds=1)
        [kept] = await sender.schedule_messages(ServiceBusMessage("scheduled"), at)
        [cancelled] = await sender.schedule_messages(ServiceBusMessage("cancelled"), at)
        assert kept != cancelled
        await sender.cancel_scheduled_messages(cancelled)
        [pending] = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert pending.sequence_number == kept
        assert pending.state == ServiceBusMessageState.SCHEDULED
        messages = await receive(receiver, 1, within=3)
        assert [str(m) for m in messages] == ["scheduled"]
        assert messages[0].sequence_number == kept
        assert messages[0].enqueued_time_utc >= at - timedelta(milliseconds=50)
        await receiver.complete_message(messages[0])


async def test_peek_returns_messages_in_order_without_locking(client, receive):
    async with client.get_queue_sender("peek") as sender:
        await sender.send_messages([ServiceBusMessage(f"p{index}") for index in range(3)])
    async with client.get_queue_receiver("peek") as receiver:
        peeked = await receiver.peek_messages(max_message_count=10)
        assert [str(m) for m in peeked] == ["p0", "p1", "p2"]
        numbers = [m.sequence_number for m in peeked]
        assert numbers == sorted(numbers)
        tail = await receiver.peek_messages(max_message_count=10, sequence_number=numbers[1])
        assert [m.sequence_number for m in tail] == numbers[1:]
        received = await receive(receiver, 3)
        assert [m.sequence_number for m in received] == numbers
        for message in received:
            await receiver.complete_message(message)


async def test_receive_and_delete_removes_on_delivery(client, receive):
    async with client.get_queue_sender("receive-delete") as sender:
        await sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    async with client.get_queue_receiver(
        "receive-delete", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as rd:
        messages = await receive(rd, 2)
        assert [str(m) for m in messages] == ["a", "b"]
        assert await rd.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_prefetch_delivers_up_to_link_credit(client, receive):
    async with client.get_queue_sender("prefetch") as sender:
        await sender.send_messages([ServiceBusMessage(f"m{index}") for index in range(20)])
    async with client.get_queue_receiver("prefetch", prefetch_count=10) as receiver:
        messages = await receive(receiver, 20)
        assert len(messages) == 20
        assert len({m.lock_token for m in messages}) == 20
        for message in messages:
            await receiver.complete_message(message)


async def test_disconnected_receiver_locks_are_released_at_once(client, emulator, receive):
    from azure.servicebus.aio import ServiceBusClient  # noqa: PLC0415

    async with client.get_queue_sender("disconnect") as sender:
        await sender.send_messages(ServiceBusMessage("orphan"))
    other = ServiceBusClient.from_connection_string(emulator.connection_string)
    async with other:
        receiver = other.get_queue_receiver("disconnect")
        async with receiver:
            [held] = await receive(receiver, 1)
    # The 30 s lock is not waited for: the message comes back as soon as its receiver is gone.
    async with client.get_queue_receiver("disconnect") as receiver:
        [again] = await receive(receiver, 1, within=3)
        assert again.sequence_number == held.sequence_number
        await receiver.complete_message(again)


async def test_auto_forwarding_moves_messages_to_target(client, receive):
    async with client.get_queue_sender("forward-source") as sender:
        await sender.send_messages(ServiceBusMessage("forwarded"))
    async with client.get_queue_receiver("forward-target") as receiver:
        [message] = await receive(receiver, 1)
        assert str(message) == "forwarded"
        await receiver.complete_message(message)


async def test_dead_letters_forward_to_configured_queue(client, receive):
    async with client.get_queue_sender("dlq-forward-source") as sender:
        await sender.send_messages(ServiceBusMessage("bounced"))
    async with client.get_queue_receiver("dlq-forward-source") as receiver:
        [message] = await receive(receiver, 1)
        await receiver.abandon_message(message)
    async with client.get_queue_receiver("dlq-collector") as collector:
        [forwarded] = await receive(collector, 1)
        assert str(forwarded) == "bounced"
        assert forwarded.dead_letter_reason == "MaxDeliveryCountExceeded"
        await collector.complete_message(forwarded)


async def test_subscription_dead_letter_queue(client, receive):
    async with client.get_topic_sender("events") as sender:
        await sender.send_messages(ServiceBusMessage("refund gone wrong", correlation_id="order-7",
                                                     application_properties={"kind": "refund"}))  # fmt: skip
    async with client.get_subscription_receiver("events", "refunds") as receiver:
        [message] = await receive(receiver, 1)
        await receiver.dead_letter_message(message, reason="Unrefundable")
    async with client.get_subscription_receiver(
        "events", "refunds", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead:
        [dead_message] = await receive(dead, 1)
        assert str(dead_message) == "refund gone wrong"
        assert dead_message.dead_letter_reason == "Unrefundable"
        await dead.complete_message(dead_message)
    async with client.get_subscription_receiver("events", "all") as everything:
        for message in await receive(everything, 1):
            await everything.complete_message(message)


async def test_competing_receivers_share_messages_without_duplicates(client, receive):
    async with client.get_queue_sender("basic") as sender:
        await sender.send_messages([ServiceBusMessage(f"job-{index}") for index in range(30)])
    async with (
        client.get_queue_receiver("basic", prefetch_count=5) as first,
        client.get_queue_receiver("basic", prefetch_count=5) as second,
    ):

        async def drain(receiver):
            taken = []
            for _ in range(20):
                batch = await receiver.receive_messages(max_message_count=5, max_wait_time=0.5)
                for message in batch:
                    await receiver.complete_message(message)
                taken += [str(m) for m in batch]
                if not batch:
                    break
            return taken

        first_taken, second_taken = await asyncio.gather(drain(first), drain(second))
    assert sorted(first_taken + second_taken) == sorted(f"job-{index}" for index in range(30))
    assert first_taken
    assert second_taken


async def test_receive_deferred_in_receive_and_delete_mode_removes_it(client, receive):
    async with client.get_queue_sender("defer") as sender:
        await sender.send_messages(ServiceBusMessage("deferred then taken"))
    async with client.get_queue_receiver("defer") as receiver:
        [message] = await receive(receiver, 1)
        await receiver.defer_message(message)
    async with client.get_queue_receiver(
        "defer", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as taker:
        [taken] = await taker.receive_deferred_messages([message.sequence_number])
        assert str(taken) == "deferred then taken"
        assert await taker.peek_messages(max_message_count=10, sequence_number=1) == []


def _sync_round_trip(connection_string: str) -> list[tuple[str, int]]:
    from azure.servicebus import ServiceBusClient  # noqa: PLC0415 - the sync SDK, next to the async one

    seen = []
    with ServiceBusClient.from_connection_string(connection_string) as client:
        with client.get_queue_sender("sync") as sender:
            sender.send_messages([ServiceBusMessage("one"), ServiceBusMessage("two")])
        with client.get_queue_receiver("sync", max_wait_time=3) as receiver:
            first, second = receiver.receive_messages(max_message_count=2, max_wait_time=3)
            receiver.abandon_message(first)
            receiver.complete_message(second)
            [again] = receiver.receive_messages(max_message_count=1, max_wait_time=3)
            receiver.complete_message(again)
            seen = [(str(m), m.delivery_count) for m in (first, second, again)]
            assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []
    return seen


async def test_sync_sdk_round_trip(emulator):
    seen = await asyncio.to_thread(_sync_round_trip, emulator.connection_string)
    assert seen == [("one", 0), ("two", 0), ("one", 1)]


async def test_message_scheduled_on_a_topic_fans_out_when_due(client, receive):
    async with (
        client.get_subscription_receiver("events", "all") as receiver,
        client.get_topic_sender("events") as sender,
    ):
        at = datetime.now(UTC) + timedelta(seconds=1)
        [number] = await sender.schedule_messages(ServiceBusMessage("topic later"), at)
        [cancelled] = await sender.schedule_messages(ServiceBusMessage("topic never"), at)
        await sender.cancel_scheduled_messages(cancelled)
        [message] = await receive(receiver, 1, within=4)
        assert str(message) == "topic later"
        assert message.sequence_number == number
        assert message.enqueued_time_utc >= at - timedelta(milliseconds=50)
        await receiver.complete_message(message)
        assert await receive(receiver, 1, within=0.5) == []


async def test_large_message_round_trips_intact(client, receive):
    payload = bytes(range(256)) * 4096  # 1 MiB: many frames each way, partial socket writes
    async with client.get_queue_sender("batch") as sender:
        await sender.send_messages(ServiceBusMessage(payload, message_id="big"))
    async with client.get_queue_receiver("batch") as receiver:
        [message] = await receive(receiver, 1)
        assert b"".join(message.body) == payload
        await receiver.complete_message(message)


CONCURRENCY = 16


async def test_concurrent_lock_renewals_keep_the_connection(client, receive):
    # The SDK gives requests sent at once the same delivery-id; Azure accepts them, so must the emulator.
    async with client.get_queue_sender("renew-gather") as sender:
        await sender.send_messages([ServiceBusMessage(f"job {n}") for n in range(CONCURRENCY)])
    async with client.get_queue_receiver("renew-gather", prefetch_count=CONCURRENCY) as receiver:
        messages = await receive(receiver, CONCURRENCY)
        assert len(messages) == CONCURRENCY
        renewed = await asyncio.gather(*[receiver.renew_message_lock(m) for m in messages])
        assert all(after >= m.locked_until_utc for after, m in zip(renewed, messages, strict=True))
        await asyncio.gather(*[receiver.complete_message(m) for m in messages])
        assert await receiver.peek_messages(max_message_count=CONCURRENCY, sequence_number=1) == []


async def test_auto_lock_renewer_holds_many_messages_past_their_lock(client, receive):
    async with client.get_queue_sender("renew-many") as sender:
        await sender.send_messages([ServiceBusMessage(f"job {n}") for n in range(CONCURRENCY)])
    async with (
        AutoLockRenewer(max_lock_renewal_duration=30) as renewer,
        client.get_queue_receiver(
            "renew-many", prefetch_count=CONCURRENCY, auto_lock_renewer=renewer
        ) as receiver,
    ):
        messages = await receive(receiver, CONCURRENCY)
        assert len(messages) == CONCURRENCY
        await asyncio.sleep(6)  # past the 5 s lock: only the renewer's concurrent renewals keep them
        for message in messages:
            await receiver.complete_message(message)
        assert await receiver.peek_messages(max_message_count=CONCURRENCY, sequence_number=1) == []
