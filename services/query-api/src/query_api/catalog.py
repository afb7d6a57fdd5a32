"""The event catalog the dashboard's selector shows: one entry per event the caller may see."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from query_api.columns import PURCHASED_AT

if TYPE_CHECKING:
    from query_api.readmodel import ReadModel
    from query_api.scope import EventScope


def event_catalog(model: ReadModel, scope: EventScope) -> list[dict[str, Any]]:
    """Each visible event with its name (the latest sale's), orders, tickets, gross and sale period."""
    # Only the columns the catalog reads: the whole frame would be copied otherwise.
    columns = ("id", "eventId", "EventName", PURCHASED_AT, "TotalTickets", "TotalAmount", "PurchaseDate")
    rows = model.rows(scope, columns=columns)
    catalog = (
        rows.group_by("eventId")
        .agg(
            pl.col("EventName").sort_by([PURCHASED_AT, "id"]).drop_nulls().last().alias("eventName"),
            pl.len().alias("ordersCount"),
            pl.col("TotalTickets").sum().alias("ticketsSold"),
            pl.col("TotalAmount").sum().alias("grossRevenue"),
            pl.col("PurchaseDate").min().alias("firstPurchase"),
            pl.col("PurchaseDate").max().alias("lastPurchase"),
        )
        .sort("eventId")
    )
    return catalog.to_dicts()
