"""The ``events`` catalog: one document per event with its name, city, first and last sale and counts.

Counts are recomputed from the stored transactions (one aggregate query per event, scoped to its
partition, through the store interface) rather than incremented. Before a page is written, its
events are added to a backlog document; the backlog is emptied only after their entries are
recomputed. A run that dies in between leaves them in the backlog, and the next run recomputes
them first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from otcommon.schemas import format_timestamp
from otcommon.store import DocumentNotFoundError, read_modify_write

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from otcommon.store import Document, DocumentContainer


@dataclass(frozen=True, slots=True)
class EventStats:
    """Aggregates over one event's stored transactions."""

    orders: int
    tickets: int
    gross: float
    first_sale: str | None
    last_sale: str | None
    name: str | None


EVENT_STATS_QUERY = (
    "SELECT COUNT(1) AS orders, SUM(c.TotalTickets) AS tickets, SUM(c.TotalAmount) AS gross, "
    "MIN(c.PurchaseDate) AS firstSale, MAX(c.PurchaseDate) AS lastSale, MAX(c.EventName) AS name FROM c"
)
"""One event's aggregates, run in its partition (the stand-in has no GROUP BY, and none is needed)."""


class EventStatsQuery:
    """One aggregate query per event, scoped to its partition, through the store interface."""

    def __init__(self, transactions: DocumentContainer) -> None:
        self._transactions = transactions

    async def stats(self, event_id: str) -> EventStats:
        """The event's aggregates."""
        rows = [
            row
            async for page in self._transactions.query(EVENT_STATS_QUERY, partition_key=event_id)
            for row in page.items
        ]
        row: Mapping[str, Any] = rows[0] if rows else {}
        return EventStats(
            orders=int(row.get("orders") or 0),
            tickets=int(row.get("tickets") or 0),
            gross=round(float(row.get("gross") or 0.0), 2),
            first_sale=row.get("firstSale"),
            last_sale=row.get("lastSale"),
            name=row.get("name"),
        )


class EventCatalog:
    """Keeps the ``events`` container (partitioned by ``/id``) current."""

    def __init__(self, events: DocumentContainer, stats: EventStatsQuery, backlog: CatalogBacklog) -> None:
        self._events = events
        self._stats = stats
        self._backlog = backlog

    async def mark(self, event_ids: Iterable[str]) -> None:
        """Record that these events' transactions are about to change (before writing them)."""
        await self._backlog.add(event_ids)

    async def refresh_pending(self, *, details: Mapping[str, Mapping[str, Any]] | None = None) -> int:
        """Recompute every event in the backlog (this run's and any an interrupted run left)."""
        pending = await self._backlog.pending()
        refreshed = await self.refresh(pending, details=details)
        await self._backlog.remove(pending)
        return refreshed

    async def refresh(
        self, event_ids: Iterable[str], *, details: Mapping[str, Mapping[str, Any]] | None = None
    ) -> int:
        """Recompute the catalog entries of these events; ``details`` adds names and cities from the API."""
        refreshed = 0
        for event_id in sorted(set(event_ids)):
            stats = await self._stats.stats(event_id)
            extra = (details or {}).get(event_id, {})
            await self._events.upsert(
                {
                    "id": event_id,
                    "name": extra.get("name") or stats.name,
                    "city": extra.get("city"),
                    "startsAt": extra.get("startsAt"),
                    "timeZone": extra.get("timeZone"),
                    "firstSale": stats.first_sale,
                    "lastSale": stats.last_sale,
                    "ordersCount": stats.orders,
                    "ticketsCount": stats.tickets,
                    "grossRevenue": stats.gross,
                    "refreshedAt": format_timestamp(datetime.now(tz=UTC)),
                }
            )
            refreshed += 1
        return refreshed


BACKLOG_ID = "catalog-backlog"


class CatalogBacklog:
    """Events whose catalog entries are due for recomputation (one document in ``state``)."""

    def __init__(self, state: DocumentContainer) -> None:
        self._state = state

    async def add(self, event_ids: Iterable[str]) -> None:
        """Remember events about to change; a no-op when all are remembered already."""
        new = set(event_ids)
        if new:
            await self._update(lambda events: events | new)

    async def pending(self) -> set[str]:
        """The events waiting for recomputation."""
        try:
            document = await self._state.read(BACKLOG_ID, partition_key=BACKLOG_ID)
        except DocumentNotFoundError:
            return set()
        return set(document.get("events", []))

    async def remove(self, event_ids: Iterable[str]) -> None:
        """Forget events whose entries were recomputed."""
        done = set(event_ids)
        if done:
            await self._update(lambda events: events - done)

    async def _update(self, change: Callable[[set[str]], set[str]]) -> None:
        def apply(current: Document) -> Document | None:
            events = set(current.get("events", []))
            updated = change(events)
            return None if updated == events else {**current, "events": sorted(updated)}

        await read_modify_write(
            self._state,
            BACKLOG_ID,
            partition_key=BACKLOG_ID,
            mutate=apply,
            create=lambda: {"id": BACKLOG_ID, "kind": "backlog", "events": sorted(change(set()))},
        )
