"""Answer processes hand what they record to apply processes through pipes (webhooks/handoff.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from stripe_fixtures import event, fixture, sign
from test_acknowledgement import RecordingApplier, delivery
from webhooks_fakes import Clock, build_service, container, unapplied

from webhooks.handoff import HandOffWriter, MalformedHandOffError, decode, encode, receive_hand_offs
from webhooks.journal import UNAPPLIED_QUERY, EventJournal
from webhooks.models import StripeEvent
from webhooks.processor import EventProcessor, Queued

PATH = "/api/webhooks/stripe"


def refund_event(n: int = 1) -> StripeEvent:
    return StripeEvent.from_payload(event("refund.created", fixture("refund"), n=n))


@contextlib.asynccontextmanager
async def pipe():
    """A pipe's read and write ends, each closed at exit unless a reader or writer took it."""
    read, write = os.pipe()
    ends = {"read": read, "write": write}
    try:
        yield ends
    finally:
        for fd in ends.values():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def test_a_fresh_event_travels_with_its_payload_etag_and_queue_time():
    queued = Queued("evt_test000001", refund_event(), '"etag-1"', 12.5)
    line = encode(queued)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # one line per event, whatever the payload holds
    assert decode(line) == queued


def test_a_redelivery_travels_as_its_id_alone():
    assert decode(encode(Queued("evt_test000001"))) == Queued("evt_test000001")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json\n", "not JSON"),
        (b'{"event": {}}\n', "no event id"),
        (b'["evt_1"]\n', "no event id"),
        (json.dumps({"id": "evt_test000001", "event": {}}).encode(), "ETag"),
        (
            json.dumps(
                {"id": "evt_test000001", "event": {"object": "charge"}, "etag": "e", "queuedAt": 1}
            ).encode(),
            "not a Stripe event",
        ),
        (
            json.dumps(
                {"id": "evt_other", "event": refund_event().payload, "etag": "e", "queuedAt": 1}
            ).encode(),
            "differs",
        ),
    ],
)
def test_a_line_that_is_not_a_handed_over_event_is_refused_with_the_reason(line, reason):
    with pytest.raises(MalformedHandOffError, match=reason):
        decode(line)


async def test_events_written_to_a_pipe_are_taken_in_order_until_it_closes_and_bad_lines_are_skipped():
    async with pipe() as ends:
        writer = HandOffWriter(ends.pop("write"))
        await writer.open()
        taken: list[Queued] = []

        async def take(queued: Queued) -> None:
            taken.append(queued)

        receiving = asyncio.create_task(receive_hand_offs([ends.pop("read")], take))
        sent = [Queued(f"evt_test00000{n}", refund_event(n), f'"e{n}"', float(n)) for n in (1, 2)]
        assert writer.hand_off(sent[0])
        writer._transport.write(b"a line from nowhere\n")  # a corrupt line between two
        assert writer.hand_off(sent[1])
        assert writer.hand_off(Queued("evt_test000001"))
        await writer.close()
        async with asyncio.timeout(10):
            count = await receiving
    assert count == 3
    assert taken == [*sent, Queued("evt_test000001")]


async def test_a_writer_far_ahead_of_its_reader_refuses_more_instead_of_holding_it_all():
    async with pipe() as ends:
        writer = HandOffWriter(ends.pop("write"), max_pending_bytes=256 * 1024)
        await writer.open()
        big = Queued("evt_test000001", refund_event(), '"e"', 1.0)
        # Nobody reads: the pipe's buffer fills, then the writer's; then it says no.
        answers = [writer.hand_off(big) for _ in range(2_000)]
        assert answers[0] is True
        assert False in answers
        refused_from = answers.index(False)
        assert all(answer is False for answer in answers[refused_from:])
        # Stopping while nobody reads: the answer process is not held up.
        async with asyncio.timeout(10):
            await writer.close(grace=0.1)


async def test_a_writer_whose_reader_is_gone_refuses_to_write_more():
    async with pipe() as ends:
        writer = HandOffWriter(ends.pop("write"))
        await writer.open()
        os.close(ends.pop("read"))  # the apply process died
        writer.hand_off(Queued("evt_test000001"))
        async with asyncio.timeout(10):
            while writer.hand_off(Queued("evt_test000002")):
                await asyncio.sleep(0.01)
        await writer.close()


async def test_an_answer_process_hands_over_what_it_records_and_the_apply_process_applies_it_once(settings):
    applier = RecordingApplier()
    async with pipe() as ends:
        answering = build_service(settings.model_copy(update={"webhooks_hand_off_fd": ends.pop("write")}))
        applying = EventProcessor(
            journal=EventJournal(answering.events, clock=answering.clock), applier=applier
        )
        receiving = asyncio.create_task(receive_hand_offs([ends.pop("read")], applying.take_over))
        async with TestClient(TestServer(answering.app())) as client:
            for body in (delivery(1), delivery(2), delivery(1)):  # the last one a redelivery
                response = await client.post(PATH, data=body, headers={"Stripe-Signature": sign(body)})
                assert response.status == 200
            # Nothing is queued in the answer process: it has no workers.
            assert answering.processor._queue.empty()
        async with asyncio.timeout(10):
            assert await receiving == 3  # the app closed its end when it stopped
        await applying.drain()
    assert sorted(applier.applied) == ["evt_test000001", "evt_test000002"]
    assert {doc["id"]: doc["state"] for doc in answering.events.documents()} == {
        "evt_test000001": "applied",
        "evt_test000002": "applied",
    }


async def test_an_event_the_answer_process_cannot_hand_over_is_answered_and_left_to_the_sweep(settings):
    service = build_service(settings, RecordingApplier())
    refused: list[Queued] = []

    def hand_off(queued: Queued) -> bool:
        refused.append(queued)
        return False

    service.processor.hand_over_to(hand_off)
    async with TestClient(TestServer(service.app())) as client:
        body = delivery()
        response = await client.post(PATH, data=body, headers={"Stripe-Signature": sign(body)})
        assert response.status == 200
    assert [queued.event_id for queued in refused] == ["evt_test000001"]
    assert next(iter(service.events.documents()))["state"] == "received"
    applier = RecordingApplier()
    sweeper = EventProcessor(journal=EventJournal(service.events, clock=service.clock), applier=applier)
    service.clock.advance(11)
    assert await sweeper.sweep() == 1
    assert applier.applied == ["evt_test000001"]


async def test_an_event_taken_over_twice_while_queued_is_applied_once():
    applier = RecordingApplier()
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    journal = EventJournal(events, clock=Clock())
    stripe_event = refund_event()
    etag = await journal.record(stripe_event)
    processor = EventProcessor(journal=journal, applier=applier)
    await processor.take_over(Queued(stripe_event.id, stripe_event, etag, 0.0))
    await processor.take_over(Queued(stripe_event.id))  # its redelivery, handed over meanwhile
    await processor.drain()
    assert applier.applied == [stripe_event.id]
