"""Announcements published while a send is under way go out together in the next send, each once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from otcommon.bus import PublishError
from otcommon.messages import Envelope, Message, TransactionChange, TransactionChanged, make_envelope
from webhooks.announcements import CoalescingPublisher, HeldPublisher


def announcement(n: int) -> Envelope[Message]:
    message = TransactionChanged(
        transaction_id=f"tx-{n}",
        event_id="ev-1",
        change=TransactionChange.REFUNDED,
        changed_fields=("stripeRefunds",),
        changed_at=datetime(2026, 5, 1, tzinfo=UTC),
    )
    return make_envelope(message, key=f"tx-{n}/stripe/evt_{n}", correlation_id=f"evt_{n}")


class HeldSender:
    """The inner publisher: records each send; a send waits until the test lets it go; may fail."""

    def __init__(self) -> None:
        self.sends: list[list[str]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.failures = 0

    async def publish(self, envelopes) -> None:
        self.sends.append([envelope.correlation_id for envelope in envelopes])
        self.started.set()
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise PublishError("the bus refused the batch", sent=0)

    async def close(self) -> None:
        return None


async def until_queued_behind_the_send(tasks: list[asyncio.Task[None]]) -> None:
    """Let each task run up to its wait for the send under way (no sleeps: one loop pass each)."""
    for _ in tasks:
        await asyncio.sleep(0)


async def test_messages_published_during_a_send_share_the_next_send():
    inner = HeldSender()
    publisher = CoalescingPublisher(inner)
    first = asyncio.create_task(publisher.publish([announcement(1)]))
    await inner.started.wait()
    later = [asyncio.create_task(publisher.publish([announcement(n)])) for n in (2, 3, 4)]
    await until_queued_behind_the_send(later)
    inner.release.set()
    await asyncio.gather(first, *later)
    assert inner.sends == [["evt_1"], ["evt_2", "evt_3", "evt_4"]]
    assert publisher.sends == 2


async def test_every_caller_of_a_failed_send_gets_its_error_and_the_next_send_works():
    inner = HeldSender()
    inner.failures = 2
    publisher = CoalescingPublisher(inner)
    first = asyncio.create_task(publisher.publish([announcement(1)]))
    await inner.started.wait()
    later = [asyncio.create_task(publisher.publish([announcement(n)])) for n in (2, 3)]
    await until_queued_behind_the_send(later)
    inner.release.set()
    outcomes = await asyncio.gather(first, *later, return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [PublishError] * 3
    await publisher.publish([announcement(4)])
    assert inner.sends == [["evt_1"], ["evt_2", "evt_3"], ["evt_4"]]


async def test_a_publish_of_nothing_sends_nothing():
    inner = HeldSender()
    await CoalescingPublisher(inner).publish([])
    assert inner.sends == []


@pytest.mark.parametrize("failing", [False, True])
async def test_a_caller_returns_only_after_the_send_carrying_its_message(failing):
    inner = HeldSender()
    inner.failures = int(failing)
    publisher = CoalescingPublisher(inner)
    task = asyncio.create_task(publisher.publish([announcement(1)]))
    await inner.started.wait()
    assert not task.done()
    inner.release.set()
    if failing:
        with pytest.raises(PublishError):
            await task
    else:
        await task


async def test_held_messages_wait_for_send_held_and_go_in_one_send():
    inner = HeldSender()
    inner.release.set()
    held = HeldPublisher(inner)
    for n in (1, 2, 3):
        await held.publish([announcement(n)])
    assert inner.sends == []
    assert await held.send_held() == set()
    assert inner.sends == [["evt_1", "evt_2", "evt_3"]]
    assert await held.send_held() == set()  # nothing held since: no send
    assert len(inner.sends) == 1


async def test_a_failed_send_of_held_messages_names_their_events_and_holds_them_no_more():
    inner = HeldSender()
    inner.release.set()
    inner.failures = 1
    held = HeldPublisher(inner)
    await held.publish([announcement(1), announcement(2)])
    assert await held.send_held() == {"evt_1", "evt_2"}
    await held.publish([announcement(3)])
    assert await held.send_held() == set()
    assert inner.sends == [["evt_1", "evt_2"], ["evt_3"]]
