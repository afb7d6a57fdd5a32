"""What the source changing (or only seeming to) does, through the sync and the import as a user runs them."""

from __future__ import annotations

import csv
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ingest_fakes import T0, api_row

from otcommon.messages import EnrichmentReason, decode_message
from otcommon.schemas import EXPORT_COLUMNS

if TYPE_CHECKING:
    from pathlib import Path

    from ingest_fakes import World


def export_row(n: int, **overrides: Any) -> dict[str, Any]:
    row = dict.fromkeys(EXPORT_COLUMNS, "")
    row.update(
        SN=n,
        EventName="Summer Tour: Berlin",
        ticketId=f"TK-{n}",
        TotalTickets=2,
        TotalAmount=50,
        PurchaseDate="05/01/2026 07:30 PM",
        PurchaseFrom="online",
        PaymentID=f"pi_{n}",
    )
    row.update(overrides)
    return row


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(EXPORT_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def requests(world: World) -> list:
    return [decode_message(raw).message for raw in world.messages()]


async def test_a_requeued_and_enriched_order_paid_again_is_queued_as_a_new_payment(world: World):
    world.source.put(api_row(1))
    await world.runner.run()
    await world.transactions.patch(
        "tx-1",
        partition_key="ev1",
        operations=[{"op": "set", "path": "/enrichmentState", "value": "unresolved"}],
    )
    assert await world.queue.requeue(state="unresolved") == 1
    requeue = requests(world)[-1]
    # The enricher traces the payment this time.
    await world.transactions.patch(
        "tx-1",
        partition_key="ev1",
        operations=[
            {"op": "set", "path": "/enrichmentState", "value": "enriched"},
            {"op": "set", "path": "/stripeRouteType", "value": "platform"},
            {"op": "set", "path": "/stripeChargeId", "value": "ch_old"},
            {"op": "set", "path": "/depositStatus", "value": "paid"},
        ],
    )
    published = len(world.messages())

    # The buyer paid again with another card: the order now has another payment.
    world.source.put(api_row(1, updated=T0 + timedelta(hours=2), PaymentID="pi_000901"))
    progress = await world.runner.run()

    assert (progress.updated, progress.queued) == (1, 1)
    stored = await world.transactions.read("tx-1", partition_key="ev1")
    assert (stored["PaymentID"], stored["enrichmentState"]) == ("pi_000901", "queued")
    assert [stored.get(name) for name in ("stripeRouteType", "stripeChargeId", "depositStatus")] == [None] * 3
    assert stored.get("enrichmentRequest") is None
    (new,) = requests(world)[published:]
    assert (new.payment_id, new.reason) == ("pi_000901", EnrichmentReason.NEW)
    assert new.requested_at > requeue.requested_at


async def test_a_restamped_row_costs_no_write_and_no_message(world: World):
    world.source.put(api_row(1), api_row(2))
    await world.runner.run()
    writes, published = world.transactions.writes, len(world.messages())
    # The source touched both rows (a re-save, a migration) without changing them.
    world.source.put(api_row(1, updated=T0 + timedelta(days=1)), api_row(2, updated=T0 + timedelta(days=1)))
    progress = await world.runner.run()
    assert (progress.rows_read, progress.created, progress.updated, progress.unchanged) == (2, 0, 0, 2)
    assert world.transactions.writes == writes
    assert len(world.messages()) == published
    # The checkpoint still moves past the re-stamped rows.
    assert progress.checkpoint == "2026-05-02T12:00:00.000Z"


async def test_the_same_orders_from_a_second_file_are_unchanged_and_not_written(world: World, tmp_path):
    rows = [export_row(n) for n in range(1, 6)]
    first = await world.importer.run(write(tmp_path / "berlin-march.csv", rows))
    writes, published = world.transactions.writes, len(world.messages())
    again = await world.importer.run(write(tmp_path / "berlin-march-final.csv", rows))
    assert (first.created, again.created, again.updated, again.unchanged, again.queued) == (5, 0, 0, 5, 0)
    assert world.transactions.writes == writes
    assert len(world.messages()) == published


async def test_one_ticket_id_in_two_events_is_not_a_duplicate(world: World, tmp_path):
    path = write(
        tmp_path / "tour.csv",
        [
            export_row(1, EventName="Summer Tour: Berlin", ticketId="TK-1"),
            export_row(2, EventName="Summer Tour: Hamburg", ticketId="TK-1"),  # numbering restarts per event
            export_row(3, EventName="Summer Tour: Hamburg", ticketId="TK-2"),
            export_row(
                4, EventName="Summer Tour: Hamburg", ticketId="TK-2", PurchaseDate="05/02/2026 09:00 PM"
            ),
        ],
    )
    report = await world.importer.run(path)
    assert (report.created, report.duplicate_ticket_ids) == (4, 1)
    assert report.to_json()["duplicateTicketIds"] == 1
    assert {doc["eventId"] for doc in world.transactions.documents()} == {
        "summer-tour-berlin",
        "summer-tour-hamburg",
    }
