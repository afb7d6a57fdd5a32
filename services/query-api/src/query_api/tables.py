"""The transactions table and the customers table (SPEC section 4) over the read model."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from query_api.columns import CUSTOMER_ID, PURCHASED_AT
from query_api.pagination import Page, PageRequest, fingerprint, paginate
from query_api.readmodel import ROW_NUMBER, served

if TYPE_CHECKING:
    from query_api.filters import TransactionFilter
    from query_api.readmodel import ReadModel
    from query_api.scope import EventScope

TRANSACTION_SORTS: Final = {
    name: name
    for name in (
        "PurchaseDate",
        "EventName",
        "eventId",
        "ticketId",
        "Name",
        "Email",
        "Phone",
        "TicketTypes",
        "TotalTickets",
        "TotalAmount",
        "OrganizerAmount",
        "PurchaseFrom",
        "IsRefunded",
        "IsDisputed",
        "IsValid",
        "ReferralCode",
        "PaymentID",
        "TotalScanCount",
        "TotalTicketRedeemed",
        "TicketRedemptionDateTime",
        "stripeRouteType",
        "depositStatus",
        "depositDate",
    )
}
"""The sortable columns of the transaction table (fixed-width UTC timestamps sort as text)."""

CUSTOMER_SORTS: Final = {
    name: name
    for name in (
        "name",
        "email",
        "phone",
        "firstPurchase",
        "lastPurchase",
        "orders",
        "tickets",
        "totalSpent",
        "redeemedTickets",
    )
}
"""The customer table's sortable columns."""


def transactions_page(
    model: ReadModel, scope: EventScope, filters: TransactionFilter, request: PageRequest
) -> tuple[list[dict[str, Any]], Page]:
    """One page of the transactions the caller may see that match the filters.

    Only the row number, the sort column and the id of the matching rows are sorted; the page's
    rows are then taken whole from the model by row number.
    """
    column = _sort_column(TRANSACTION_SORTS, request)
    frame = model.frame()
    keys = model.rows(scope, filters, columns=[ROW_NUMBER, column, "id"])
    page = paginate(
        keys, request, sortable=TRANSACTION_SORTS, key="id", query_fingerprint=fingerprint(scope, filters)
    )
    rows = frame[page.rows[ROW_NUMBER]]
    return served(rows), replace(page, rows=rows)


def _sort_column(sortable: dict[str, str], request: PageRequest) -> str:
    column = sortable.get(request.sort)
    if column is None:
        raise ValueError(f"sort must be one of {', '.join(sorted(sortable))}")
    return column


CUSTOMER_COLUMNS: Final = (
    CUSTOMER_ID,
    "id",
    PURCHASED_AT,
    "Name",
    "Email",
    "Phone",
    "PurchaseDate",
    "TotalTickets",
    "TotalAmount",
    "TotalTicketRedeemed",
    "IsRefunded",
    "IsDisputed",
    "eventId",
)
"""The columns the customer table reads."""


def _latest_non_empty(column: str) -> pl.Expr:
    # The rows arrive sorted by purchase, then id: the last present value is the latest.
    present = pl.col(column).is_not_null() & (pl.col(column).str.strip_chars() != "")
    return pl.col(column).filter(present).last()


def customers(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per buyer (by customerKey), in the columns of SPEC section 4."""
    ordered = rows.lazy().select(CUSTOMER_COLUMNS).sort([PURCHASED_AT, "id"])
    return (
        ordered.group_by(pl.col(CUSTOMER_ID).alias("id"))
        .agg(
            _latest_non_empty("Name").alias("name"),
            _latest_non_empty("Email").alias("email"),
            _latest_non_empty("Phone").alias("phone"),
            pl.col("PurchaseDate").min().alias("firstPurchase"),
            pl.col("PurchaseDate").max().alias("lastPurchase"),
            pl.len().alias("orders"),
            pl.col("TotalTickets").sum().alias("tickets"),
            pl.col("TotalAmount").sum().alias("totalSpent"),
            pl.col("TotalTicketRedeemed").sum().alias("redeemedTickets"),
            pl.col("IsRefunded").any().alias("refunded"),
            pl.col("IsDisputed").any().alias("disputed"),
            pl.col("eventId").unique().sort().alias("events"),
        )
        .collect()
    )


def customers_page(
    model: ReadModel, scope: EventScope, filters: TransactionFilter, request: PageRequest
) -> tuple[list[dict[str, Any]], Page]:
    """One page of the buyers of the transactions the caller may see that match the filters."""
    table = customers(model.rows(scope, filters, columns=CUSTOMER_COLUMNS))
    page = paginate(
        table, request, sortable=CUSTOMER_SORTS, key="id", query_fingerprint=fingerprint(scope, filters)
    )
    return page.rows.to_dicts(), page


def customer_detail(
    model: ReadModel, scope: EventScope, customer_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A buyer and their transactions (newest first), or None when the caller sees none of them."""
    rows = model.rows(scope).filter(pl.col(CUSTOMER_ID) == customer_id)
    if rows.height == 0:
        return None
    newest_first = rows.sort([PURCHASED_AT, "id"], descending=[True, False])
    return customers(rows).row(0, named=True), served(newest_first)
