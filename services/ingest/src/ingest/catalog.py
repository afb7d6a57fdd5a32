"""The ``events`` catalog: one document per event with its name, city, first and last sale and counts.

Counts are recomputed from the stored transactions of each event a run touched (one aggregate
query per event, scoped to its partition) rather than incremented, so an interrupted run can
never leave them wrong: the next run that touches the event recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from otcommon.schemas import format_timestamp

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from azure.cosmos.aio import ContainerProxy

    from otcommon.store import DocumentContainer


@dataclass(frozen=True, slots=True)
class EventStats:
    """Aggregates over one event's stored transactions."""

    orders: int
    tickets: int
    gross: float
    first_sale: str | None
    last_sale: str | None
    name: str | None


class EventStatsReader(Protocol):
    """Computes the aggregates of one event."""

    async def stats(self, event_id: str) -> EventStats: ...


_STATS_QUERY = (
    "SELECT COUNT(1) AS orders, SUM(c.TotalTickets) AS tickets, SUM(c.TotalAmount) AS gross, "
    "MIN(c.PurchaseDate) AS firstSale, MAX(c.PurchaseDate) AS lastSale, MAX(c.EventName) AS name FROM c"
)


class CosmosEventStats:
    """One aggregate query per event, scoped to its partition."""

    def __init__(self, transactions: ContainerProxy) -> None:
        self._transactions = transactions

    async def stats(self, event_id: str) -> EventStats:
        """The event's aggregates."""
        rows = [row async for row in self._transactions.query_items(_STATS_QUERY, partition_key=event_id)]
        row: Mapping[str, Any] = rows[0] if rows else {}
        return EventStats(
            orders=int(row.get("orders") or 0),
            tickets=int(row.get("tickets") or 0),
            gross=round(float(row.get("gross") or 0.0), 2),
            first_sale=row.get("firstSale"),
            last_sale=row.get("lastSale"),
            name=row.get("name"),
        )


class ScanEventStats:
    """Aggregates by reading the event's documents (for in-memory containers in tests)."""

    def __init__(self, transactions: DocumentContainer) -> None:
        self._transactions = transactions

    async def stats(self, event_id: str) -> EventStats:
        """The event's aggregates."""
        rows = [row async for row in self._transactions.find({}, partition_key=event_id)]
        sales = sorted(str(row["PurchaseDate"]) for row in rows)
        return EventStats(
            orders=len(rows),
            tickets=sum(int(row.get("TotalTickets", 0)) for row in rows),
            gross=round(sum(float(row.get("TotalAmount", 0.0)) for row in rows), 2),
            first_sale=sales[0] if sales else None,
            last_sale=sales[-1] if sales else None,
            name=max((str(row["EventName"]) for row in rows), default=None),
        )


class EventCatalog:
    """Keeps the ``events`` container (partitioned by ``/id``) current."""

    def __init__(self, events: DocumentContainer, stats: EventStatsReader) -> None:
        self._events = events
        self._stats = stats

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
