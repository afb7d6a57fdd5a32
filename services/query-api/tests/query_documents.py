"""Transaction documents shaped as ingest stores them, built through the shared schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from otcommon.schemas import TicketTransaction

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def transaction(
    n: int, *, event: str = "ev1", ts: int = 1, etag: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A stored transaction document (as ingest writes it, plus Cosmos's _ts and _etag)."""
    export = {
        "EventName": f"Event {event}",
        "ticketId": f"T{n}",
        "Name": f"Buyer {n}",
        "Email": f"buyer{n}@example.com",
        "Phone": "",
        "TicketTypes": "General",
        "TotalTickets": 1,
        "TotalAmount": 10.0,
        "PurchaseDate": T0,
        "PurchaseFrom": "online",
        "IsValid": True,
    }
    enrichment = {key: fields.pop(key) for key in list(fields) if key[0].islower()}
    document = TicketTransaction.model_validate(
        {**export, **fields, "id": f"tx{n}", "eventId": event, **enrichment}
    ).to_json_dict()
    return {**document, "_ts": ts, "_etag": etag or f'"{n}-{ts}"'}
