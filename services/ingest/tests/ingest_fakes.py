"""In-memory fakes of ingest's sources and stores, and the rows they serve, for ingest's unit tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ingest.catalog import EVENT_STATS_QUERY
from ingest.source import TransactionPage
from otcommon.payment_transactions import LISTED_DOCUMENTS_QUERY, PAYMENT_TRANSACTIONS_CONTAINER
from otcommon.store import DEFAULT_TOPOLOGY, InMemoryContainer

if TYPE_CHECKING:
    from ingest.importer import FileImporter
    from ingest.queueing import EnrichmentQueue
    from ingest.storage import TransactionWriter
    from ingest.sync import SyncRunner
    from otcommon.bus import InMemoryBus

QUEUE = "stripe-enrichment-queue"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def api_row(
    n: int, *, event: str = "ev1", updated: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    """A valid API row; ``n`` makes it unique."""
    row = {
        "id": f"tx-{n}",
        "eventId": event,
        "updatedAt": (updated or T0 + timedelta(seconds=n)).isoformat(),
        "SN": n,
        "EventName": f"Show {event}",
        "ticketId": f"TK-{n}",
        "Name": f"Buyer {n}",
        "Email": f"buyer{n}@example.com",
        "Phone": "",
        "TicketTypes": "General",
        "TotalTickets": 2,
        "TotalAmount": 40.0,
        "PurchaseDate": (T0 - timedelta(days=3, seconds=n)).isoformat(),
        "PurchaseFrom": "online",
        "IsRefunded": False,
        "IsValid": True,
        "IsDisputed": False,
        "PaymentMethod": "card",
        "PaymentID": f"pi_{n:06d}",
        "TotalScanCount": 0,
        "TotalTicketRedeemed": 0,
        "PlatformFee": 2.0,
        "PaymentProviderFee": 1.5,
        "TaxFee": 0.0,
        "OrganizerAmount": 36.5,
    }
    row.update(overrides)
    return row


@dataclass
class FakeSource:
    """Serves rows ordered by (updatedAt, id), filtered by updatedSince, in pages.

    Configured, never patched: ``junk_rows`` are added to every page; after ``fail_after_pages``
    pages the next raises ``failure``; after ``hold_after_pages`` pages it sets ``held`` and waits
    for a page that never comes (as a source that keeps retrying would).
    """

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    page_size: int = 3
    # When given, every page waits for it: a run stays in flight until the test sets it.
    gate: asyncio.Event | None = None
    requested_since: list[datetime | None] = field(default_factory=list)
    junk_rows: list[Any] = field(default_factory=list)
    fail_after_pages: int | None = None
    failure: Exception = field(default_factory=lambda: ConnectionError("killed"))
    hold_after_pages: int | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)
    events_requests: int = 0

    def put(self, *rows: dict[str, Any]) -> None:
        for row in rows:
            self.rows[row["id"]] = row

    async def pages(self, *, updated_since: datetime | None, event_id: str | None = None):
        self.requested_since.append(updated_since)
        selected = sorted(
            (
                row
                for row in self.rows.values()
                if (updated_since is None or datetime.fromisoformat(row["updatedAt"]) >= updated_since)
                and (event_id is None or row["eventId"] == event_id)
            ),
            key=lambda row: (row["updatedAt"], row["id"]),
        )
        for served, start in enumerate(range(0, len(selected), self.page_size)):
            if self.gate is not None:
                await self.gate.wait()
            await self._before_page(served)
            chunk = selected[start : start + self.page_size]
            more = start + self.page_size < len(selected)
            yield TransactionPage(rows=[*chunk, *self.junk_rows], next_cursor="next" if more else None)
        await self._before_page(-(-len(selected) // self.page_size))

    async def _before_page(self, served: int) -> None:
        """Fail or hold here if configured to after ``served`` pages."""
        if served == self.fail_after_pages:
            raise self.failure
        if served == self.hold_after_pages:
            self.held.set()
            await asyncio.Event().wait()

    async def events(self) -> list[dict[str, Any]]:
        self.events_requests += 1
        return [{"id": "ev1", "name": "Show ev1", "city": "Berlin"}]


@dataclass
class World:
    transactions: InMemoryContainer
    events: InMemoryContainer
    quarantine: InMemoryContainer
    state: InMemoryContainer
    bus: InMemoryBus
    source: FakeSource
    writer: TransactionWriter
    queue: EnrichmentQueue
    runner: SyncRunner
    importer: FileImporter

    def messages(self) -> list[Any]:
        return self.bus.active_messages(queue=QUEUE)


def event_stats(rows: list[dict[str, Any]], _: dict[str, Any]) -> list[dict[str, Any]]:
    """The fake's answer to the catalog's aggregate query (the query runs on the stand-in elsewhere)."""
    if not rows:
        return []
    sales = sorted(str(row["PurchaseDate"]) for row in rows)
    return [
        {
            "orders": len(rows),
            "tickets": sum(int(row["TotalTickets"]) for row in rows),
            "gross": sum(float(row["TotalAmount"]) for row in rows),
            "firstSale": sales[0],
            "lastSale": sales[-1],
            "name": max(str(row["EventName"]) for row in rows),
        }
    ]


def listed_documents(documents: list[dict[str, Any]], parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """``LISTED_DOCUMENTS_QUERY``: the documents whose id is one of ``@keys``."""
    keys = set(parameters["@keys"])
    return [document for document in documents if document["id"] in keys]


def container(name: str) -> InMemoryContainer:
    queries: dict[str, Any] | None = None
    if name == "transactions":
        queries = {EVENT_STATS_QUERY: event_stats}
    elif name == PAYMENT_TRANSACTIONS_CONTAINER:
        queries = {LISTED_DOCUMENTS_QUERY: listed_documents}
    return InMemoryContainer(
        name, partition_key_path=DEFAULT_TOPOLOGY.container(name).partition_key, queries=queries
    )
