"""Importing export files on fakes: the report, quarantine, and idempotent re-imports."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

from otcommon.schemas import EXPORT_COLUMNS

if TYPE_CHECKING:
    from ingest_fakes import World


def export_row(n: int, **overrides):
    row = dict.fromkeys(EXPORT_COLUMNS, "")
    row.update(
        SN=n,
        EventName="Summer Tour: Berlin",
        ticketId=f"TK-{n}",
        Name=f"Buyer {n}",
        Email=f"b{n}@example.com",
        TicketTypes="VIP",
        TotalTickets=2,
        TotalAmount=50,
        PurchaseDate="05/01/2026 07:30 PM",
        PurchaseFrom="online",
        IsRefunded="no",
        IsValid="yes",
        IsDisputed="no",
        PaymentID=f"pi_{n}",
        TotalScanCount=0,
        TotalTicketRedeemed=0,
    )
    row.update(overrides)
    return row


def write(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(EXPORT_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


async def test_import_reports_every_finding_and_quarantines_bad_rows(world: World, tmp_path):
    path = write(
        tmp_path / "berlin.csv",
        [
            export_row(1),
            export_row(2),
            export_row(3, ticketId="TK-1", PurchaseDate="05/02/2026 07:30 PM"),  # duplicate ticketId
            export_row(4, TotalTicketRedeemed=5),  # redeemed more than sold
            export_row(5, TotalTickets=0, TotalAmount=10),  # zero tickets, an amount
            export_row(6, TotalAmount="-3", IsValid="perhaps"),  # rejected
            export_row(7, PaymentID="", PurchaseFrom="Box Office"),  # cash: stored, not queued
        ],
    )
    seen = []
    report = await world.importer.run(path, on_rows=seen.append)
    assert (report.rows_read, report.created, report.rejected, report.queued) == (7, 6, 1, 5)
    assert (report.duplicate_ticket_ids, report.redeemed_more_than_sold, report.zero_tickets_with_amount) == (
        1,
        1,
        1,
    )
    assert report.rejected_by_reason == {
        "TotalAmount: must not be negative": 1,
        "IsValid: expected true/false, yes/no or 1/0": 1,
    }
    assert sum(seen) == 7
    quarantined = list(world.quarantine.documents())
    assert [(q["source"], q["location"]) for q in quarantined] == [("file:berlin.csv", "line 7")]
    stored = list(world.transactions.documents())
    assert {doc["eventId"] for doc in stored} == {"summer-tour-berlin"}
    assert "rows read            7" in report.render()


async def test_reimporting_the_same_file_writes_and_queues_nothing(world: World, tmp_path):
    path = write(tmp_path / "a.csv", [export_row(n) for n in range(1, 30)])
    first = await world.importer.run(path, event_id="ev-berlin")
    writes, messages = world.transactions.writes, len(world.messages())
    again = await world.importer.run(path, event_id="ev-berlin")
    assert (first.created, again.created, again.updated, again.unchanged, again.queued) == (29, 0, 0, 29, 0)
    assert world.transactions.writes == writes
    assert len(world.messages()) == messages
    assert {doc["eventId"] for doc in world.transactions.documents()} == {"ev-berlin"}


async def test_a_file_broken_halfway_reports_what_was_stored_and_why_it_stopped(world: World, tmp_path):
    path = write(tmp_path / "half.csv", [export_row(n) for n in range(1, 801)])
    with path.open("ab") as handle:
        handle.write(b"801,Caf\xe9,TK-801,1,10\n")
    report = await world.importer.run(path)
    assert report.created == 800
    assert report.error is not None
    assert "not UTF-8 text near line 802" in report.error
    assert "STOPPED EARLY" in report.render()
    again = await world.importer.run(path)
    assert (again.created, again.unchanged) == (0, 800)


async def test_the_report_names_the_first_100_rejected_rows_and_counts_the_rest(world: World, tmp_path):
    rows = [
        export_row(1),
        export_row(2, TotalAmount="-3"),
        export_row(3, ticketId="", TotalTickets="two"),
        *(export_row(n, IsValid="perhaps") for n in range(4, 109)),
    ]
    report = await world.importer.run(write(tmp_path / "bad.csv", rows))
    assert report.rejected == 107
    as_json = report.to_json()
    # Line 1 is the header: row n is on line n + 1.
    assert as_json["rejectedRows"][:3] == [
        {"line": 3, "ticketId": "TK-2", "reasons": ["TotalAmount: must not be negative"]},
        {
            "line": 4,
            "ticketId": None,
            "reasons": ["ticketId: must not be empty", "TotalTickets: expected a number"],
        },
        {"line": 5, "ticketId": "TK-4", "reasons": ["IsValid: expected true/false, yes/no or 1/0"]},
    ]
    assert len(as_json["rejectedRows"]) == 100
    assert as_json["rejectedRows"][-1]["line"] == 102
    assert as_json["rejectedRowsNotListed"] == 7
    text = report.render()
    assert "    rows (the first 100 of 107):" in text
    assert "      line 3  ticketId TK-2  TotalAmount: must not be negative" in text
    assert "      line 4  ticketId -  ticketId: must not be empty; TotalTickets: expected a number" in text
    assert "line 103" not in text
    # Nothing personal beyond the ticketId: names and emails stay in quarantine.
    assert not any(marker in text + str(as_json) for marker in ("Buyer ", "@example.com"))


async def test_a_report_with_few_rejections_lists_them_all(world: World, tmp_path):
    report = await world.importer.run(
        write(tmp_path / "one.csv", [export_row(1), export_row(2, TotalAmount="x")])
    )
    assert [row["ticketId"] for row in report.to_json()["rejectedRows"]] == ["TK-2"]
    assert report.to_json()["rejectedRowsNotListed"] == 0
    assert "    rows (all 1):" in report.render()
