"""Incremental sync on fakes: what is stored, what is queued, where the checkpoint moves."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from ingest_fakes import T0, World, api_row

from ingest.queueing import EnrichmentQueue
from ingest.sync import SyncProgress
from otcommon.bus import PublishError
from otcommon.messages import decode_message


async def test_first_sync_stores_everything_and_queues_one_message_per_payment(world: World):
    world.source.put(*(api_row(n) for n in range(1, 8)), api_row(8, PaymentID="", PurchaseFrom="boxOffice"))
    progress = await world.runner.run()
    assert (progress.state, progress.rows_read, progress.created, progress.rejected) == ("completed", 8, 8, 0)
    stored = {doc["id"]: doc for doc in world.transactions.documents()}
    assert len(stored) == 8
    assert stored["tx-1"]["enrichmentState"] == "queued"
    assert stored["tx-8"]["enrichmentState"] is None
    payment_ids = sorted(decode_message(raw).message.payment_id for raw in world.messages())
    assert payment_ids == [f"pi_{n:06d}" for n in range(1, 8)]
    assert progress.queued == 7


async def test_second_sync_without_changes_writes_and_publishes_nothing(world: World):
    world.source.put(*(api_row(n) for n in range(1, 8)))
    await world.runner.run()
    writes, messages = world.transactions.writes, len(world.messages())
    progress = await world.runner.run()
    assert (progress.created, progress.updated, progress.queued) == (0, 0, 0)
    assert world.transactions.writes == writes
    assert len(world.messages()) == messages


async def test_only_changed_rows_are_written_after_the_source_advances(world: World):
    world.source.put(*(api_row(n) for n in range(1, 8)))
    await world.runner.run()
    # A late refund and a new scan arrive, stamped after the checkpoint.
    later = T0 + timedelta(hours=1)
    world.source.put(
        api_row(2, updated=later, IsRefunded=True, RefundedRemarks="customer request"),
        api_row(5, updated=later + timedelta(seconds=1), TotalScanCount=2, TotalTicketRedeemed=2),
        api_row(9, updated=later + timedelta(seconds=2)),
    )
    messages = len(world.messages())
    progress = await world.runner.run()
    assert (progress.created, progress.updated) == (1, 2)
    refunded = await world.transactions.read("tx-2", partition_key="ev1")
    assert refunded["IsRefunded"] is True
    assert refunded["enrichmentState"] == "queued"  # a refund does not re-enrich the payment
    assert len(world.messages()) == messages + 1


async def test_enrichment_written_meanwhile_survives_a_source_update(world: World):
    world.source.put(api_row(1))
    await world.runner.run()
    await world.transactions.patch(
        "tx-1",
        partition_key="ev1",
        operations=[
            {"op": "set", "path": "/enrichmentState", "value": "enriched"},
            {"op": "set", "path": "/stripeRouteType", "value": "connected"},
        ],
    )
    world.source.put(api_row(1, updated=T0 + timedelta(hours=2), TotalScanCount=1))
    await world.runner.run()
    stored = await world.transactions.read("tx-1", partition_key="ev1")
    assert (stored["TotalScanCount"], stored["enrichmentState"], stored["stripeRouteType"]) == (
        1,
        "enriched",
        "connected",
    )


async def test_checkpoint_advances_per_page_and_next_run_rereads_the_overlap(world: World):
    world.source.put(*(api_row(n) for n in range(1, 8)))
    progress = await world.runner.run()
    assert progress.checkpoint == "2026-05-01T12:00:07.000Z"
    await world.runner.run()
    assert world.source.requested_since[-1] == T0 + timedelta(seconds=7) - timedelta(minutes=5)


async def test_bad_rows_are_quarantined_with_every_reason_and_do_not_stop_the_run(world: World):
    world.source.put(
        api_row(1),
        api_row(2, TotalAmount="lots", PaymentID="xx_1"),
        api_row(3, id="", PurchaseDate="yesterday"),
        api_row(4),
    )
    progress = await world.runner.run()
    assert (progress.state, progress.created, progress.rejected) == ("completed", 2, 2)
    records = {tuple(sorted(r["reasons"])) for r in world.quarantine.documents()}
    assert (
        "PaymentID: must be empty or a Stripe id: pi_ or ch_ followed by letters and digits",
        "TotalAmount: expected a number",
    ) in records
    assert any("id: must be a non-empty string" in reasons for reasons in records)
    quarantined = next(
        r for r in world.quarantine.documents() if "TotalAmount: expected a number" in r["reasons"]
    )
    assert quarantined["raw"]["TotalAmount"] == "lots"
    assert quarantined["source"] == "opentickets-api"
    assert progress.rejected_reasons["TotalAmount: expected a number"] == 1


async def test_stop_request_ends_the_run_at_a_page_boundary(world: World):
    world.source.put(*(api_row(n) for n in range(1, 10)))
    stop = asyncio.Event()
    stop.set()
    progress = await world.runner.run(stop=stop)
    assert (progress.state, progress.pages, progress.rows_read) == ("stopped", 1, 3)
    assert progress.checkpoint == "2026-05-01T12:00:03.000Z"
    rest = await world.runner.run()
    assert rest.state == "completed"
    assert len(list(world.transactions.documents())) == 9


async def test_a_stop_ends_the_run_without_the_events_fetch_and_the_catalog_refresh(world: World):
    world.source.put(*(api_row(n) for n in range(1, 10)))
    world.source.hold_after_pages = 1
    stop = asyncio.Event()
    run = asyncio.create_task(world.runner.run(stop=stop))
    await world.source.held.wait()
    stop.set()
    progress = await run
    assert (progress.state, progress.pages, progress.checkpoint) == ("stopped", 1, "2026-05-01T12:00:03.000Z")
    # Nothing new starts after a stop: no events fetch, no catalog refresh (its backlog keeps ev1).
    assert world.source.events_requests == 0
    assert list(world.events.documents()) == []
    world.source.hold_after_pages = None
    assert (await world.runner.run()).state == "completed"
    assert (await world.events.read("ev1", partition_key="ev1"))["ordersCount"] == 9


async def test_a_stop_while_the_source_keeps_a_page_waiting_ends_the_run_at_once(world: World):
    world.source.put(*(api_row(n) for n in range(1, 4)))
    world.source.hold_after_pages = 0
    stop = asyncio.Event()
    run = asyncio.create_task(world.runner.run(stop=stop))
    await world.source.held.wait()
    stop.set()
    progress = await run
    assert (progress.state, progress.pages, progress.checkpoint) == ("stopped", 0, None)
    assert list(world.transactions.documents()) == []


async def test_a_cancelled_run_reports_stopped_not_running(world: World):
    world.source.put(api_row(1))
    world.source.hold_after_pages = 0
    progress = SyncProgress()
    run = asyncio.create_task(world.runner.run(progress=progress))
    await world.source.held.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert progress.state == "stopped"
    assert progress.finished_at is not None


async def test_payments_left_pending_by_a_crash_are_published_by_the_next_run(world: World):
    world.source.put(api_row(1), api_row(2))
    await world.runner.run()
    # Simulate a crash after storing, before publishing: pending documents and no messages.
    for doc in world.transactions.documents():
        await world.transactions.patch(
            doc["id"],
            partition_key="ev1",
            operations=[{"op": "set", "path": "/enrichmentState", "value": "pending"}],
        )
    published_before = len(world.messages())
    progress = await world.runner.run()
    assert progress.repaired == 2
    assert {doc["enrichmentState"] for doc in world.transactions.documents()} == {"queued"}
    # Published again (the real queue's duplicate detection drops the copies within its window).
    assert len(world.messages()) == published_before + 2


async def test_republishing_a_payment_reuses_its_message_id(world: World):
    world.source.put(api_row(1))
    await world.runner.run()
    stored = await world.transactions.read("tx-1", partition_key="ev1")
    await world.queue.enqueue([stored])
    first, again = world.messages()
    # The same id: the queue's duplicate detection (on in the project's topology) drops the copy.
    assert first.message_id == again.message_id


async def test_events_catalog_counts_come_from_stored_rows(world: World):
    world.source.put(*(api_row(n) for n in range(1, 5)), api_row(5, event="ev2"))
    await world.runner.run()
    ev1 = await world.events.read("ev1", partition_key="ev1")
    ev2 = await world.events.read("ev2", partition_key="ev2")
    assert (ev1["ordersCount"], ev1["ticketsCount"], ev1["city"], ev1["name"]) == (4, 8, "Berlin", "Show ev1")
    assert ev2["ordersCount"] == 1
    assert ev1["firstSale"] <= ev1["lastSale"]


async def test_requeue_by_state_publishes_a_fresh_request(world: World):
    world.source.put(api_row(1), api_row(2))
    await world.runner.run()
    await world.transactions.patch(
        "tx-1",
        partition_key="ev1",
        operations=[{"op": "set", "path": "/enrichmentState", "value": "unresolved"}],
    )
    before = len(world.messages())
    assert await world.queue.requeue(state="unresolved") == 1
    assert len(world.messages()) == before + 1
    newest = decode_message(world.messages()[-1]).message
    assert (newest.payment_id, newest.reason.value) == ("pi_000001", "requeue")
    assert (await world.transactions.read("tx-1", partition_key="ev1"))["enrichmentState"] == "queued"


async def test_a_future_updated_at_is_quarantined_and_does_not_move_the_checkpoint(world: World):
    world.source.put(api_row(1), api_row(2, updatedAt="2099-01-01T00:00:00Z"))
    progress = await world.runner.run()
    assert (progress.created, progress.rejected) == (1, 1)
    assert progress.checkpoint == "2026-05-01T12:00:01.000Z"
    assert progress.rejected_reasons == {"updatedAt: is in the future": 1}


async def test_rows_that_are_not_objects_are_quarantined(world: World):
    world.source.put(api_row(1))
    world.source.junk_rows = [None, ["not", "a", "row"]]
    progress = await world.runner.run()
    assert (progress.state, progress.created, progress.rejected) == ("completed", 1, 2)
    assert progress.rejected_reasons == {"row: is not a JSON object": 2}


async def test_a_document_no_message_can_describe_is_marked_unresolved_not_blocking(world: World):
    world.source.put(api_row(1), api_row(2))
    await world.runner.run()
    # A document stored by an older version with a PaymentID the message rule refuses.
    await world.transactions.patch(
        "tx-1",
        partition_key="ev1",
        operations=[
            {"op": "set", "path": "/PaymentID", "value": "pi_bad-id"},
            {"op": "set", "path": "/enrichmentState", "value": "pending"},
        ],
    )
    progress = await world.runner.run()
    assert progress.state == "completed"
    stuck = await world.transactions.read("tx-1", partition_key="ev1")
    assert stuck["enrichmentState"] == "unresolved"
    assert stuck["enrichmentReason"].startswith("cannot be queued: payment_id")


async def test_events_of_a_run_that_died_are_recounted_by_the_next(world: World):
    world.source.put(*(api_row(n) for n in range(1, 7)))
    world.source.fail_after_pages = 2
    with pytest.raises(ConnectionError):
        await world.runner.run()
    assert list(world.events.documents()) == []
    world.source.fail_after_pages = None  # the run after the crash reads nothing new: the checkpoint moved
    progress = await world.runner.run()
    assert progress.created == 0
    ev1 = await world.events.read("ev1", partition_key="ev1")
    assert ev1["ordersCount"] == 6


async def test_a_failed_publish_keeps_the_checkpoint_behind_every_unqueued_row(world: World):
    # Storing the next pages overlaps with queueing the previous ones: a publish that fails must
    # still leave the checkpoint behind every row whose payment was not queued.
    world.source.put(*(api_row(n) for n in range(1, 41)))
    publisher = world.bus.publisher(queue="stripe-enrichment-queue")
    calls = 0

    class FailsSecondTime:
        async def publish(self, envelopes):
            nonlocal calls
            calls += 1
            if calls == 2:
                raise PublishError("broker went away", sent=0)
            await publisher.publish(envelopes)

    queue = EnrichmentQueue(publisher=FailsSecondTime(), writer=world.writer, transactions=world.transactions)
    with pytest.raises(PublishError):
        await dataclasses.replace(world.runner, queue=queue).run()

    states = {doc["id"]: doc["enrichmentState"] for doc in world.transactions.documents()}
    queued_ids = {decode_message(m).message.transaction_id for m in world.messages()}
    assert {tx for tx, state in states.items() if state == "queued"} == queued_ids
    checkpoint = await world.runner.checkpoints.load("opentickets-api")
    assert checkpoint.updated_until is not None
    newest_queued = max(int(tx.removeprefix("tx-")) for tx in queued_ids)
    # api_row(n) is stamped T0 + n seconds: the checkpoint is at the newest queued row, no further.
    assert checkpoint.updated_until == T0 + timedelta(seconds=newest_queued)
    assert newest_queued < 40

    progress = await world.runner.run()  # the broker is back
    assert progress.state == "completed"
    assert {doc["enrichmentState"] for doc in world.transactions.documents()} == {"queued"}
    assert {decode_message(m).message.transaction_id for m in world.messages()} >= set(states)
