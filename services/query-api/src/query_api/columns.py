"""The read model's columns: the transaction document's fields as ingest stores them, plus derived ones.

Document fields keep their JSON names (SPEC section 2), so a row of the frame turns back into the
document the API serves. Columns the read model derives for filtering and grouping start with an
underscore and are never served.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from otcommon.schemas import ENRICHMENT_FIELDS
from otcommon.served import STRIPE_FACTS_PAYMENT_FIELD

_TEXT_FIELDS: Final = (
    "id",
    "eventId",
    "EventName",
    "ticketId",
    "Name",
    "Email",
    "Phone",
    "TicketTypes",
    "PurchaseDate",
    "PurchaseFrom",
    "RefundedRemarks",
    "ReferralCode",
    "ReferralCodeDiscountType",
    "PaymentMethod",
    "PaymentID",
    "TicketWasLastScannedTime",
    "TicketRedemptionDateTime",
    "enrichmentState",
    "enrichmentReason",
    "stripePayoutId",
    "stripePayoutStatus",
    "stripeCurrency",
    "source",
    "sourceUpdatedAt",
    "enrichedAt",
    "sourceBucket",
    "referralCodeNormalized",
    "customerKey",
    "searchText",
)
# The webhook service's Stripe facts (SPEC section 2): the served IsRefunded / IsDisputed combine them
# with the source's flags (otcommon.served), and the dashboard shows the statuses.
_STRIPE_FACT_TEXT_FIELDS: Final = (
    "stripeRefundStatus",
    "stripeRefundStateAt",
    "stripeDisputeStatus",
    "stripeDisputeReason",
    "stripeDisputeStateAt",
    STRIPE_FACTS_PAYMENT_FIELD,
)
_COUNT_FIELDS: Final = ("SN", "TotalTickets", "TotalScanCount", "TotalTicketRedeemed")
_AMOUNT_FIELDS: Final = (
    "TotalAmount",
    "ReferralCodeDiscount",
    "PlatformFee",
    "PaymentProviderFee",
    "TaxFee",
    "OrganizerAmount",
    "stripeApplicationFeeAmount",
    "stripeNetAmount",
    "stripeRefundedAmount",
)
_FLAG_FIELDS: Final = ("IsRefunded", "IsValid", "IsDisputed")
_ENRICHMENT_TEXT_FIELDS: Final = tuple(
    sorted(ENRICHMENT_FIELDS - {"stripeApplicationFeeAmount", "stripeNetAmount"})
)

DOCUMENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    **dict.fromkeys(_TEXT_FIELDS + _ENRICHMENT_TEXT_FIELDS + _STRIPE_FACT_TEXT_FIELDS, pl.String()),
    **dict.fromkeys(_COUNT_FIELDS, pl.Int64()),
    **dict.fromkeys(_AMOUNT_FIELDS, pl.Float64()),
    **dict.fromkeys(_FLAG_FIELDS, pl.Boolean()),
    "ticketTypeList": pl.List(pl.String()),
    "_ts": pl.Int64(),
    "_etag": pl.String(),
}
"""Every document field the read model keeps, with the type its JSON value must have."""

PACKED_FIELDS: Final = (
    "SN",
    "RefundedRemarks",
    "ReferralCodeDiscount",
    "ReferralCodeDiscountType",
    "PaymentMethod",
    "TicketWasLastScannedTime",
    "source",
    "sourceUpdatedAt",
    "customerKey",
    "enrichmentReason",
    "enrichedAt",
    "stripePayoutId",
    "stripePayoutStatus",
    "stripeCurrency",
    "stripePlatformAccountId",
    "stripePlatformAccountName",
    "stripeChargeId",
    "stripePaymentIntentId",
    "stripeBalanceTransactionId",
    "stripeTransferId",
    "stripeApplicationFeeAmount",
    "stripeNetAmount",
    "stripeAvailableOn",
    "depositBankName",
    "depositBankLast4",
    STRIPE_FACTS_PAYMENT_FIELD,
    "stripeRefundStatus",
    "stripeRefundStateAt",
    "stripeRefundedAmount",
    "stripeDisputeStatus",
    "stripeDisputeReason",
    "stripeDisputeStateAt",
)
"""Served fields that no filter, sort, group or search reads (only a served row shows them), most
of them null until enrichment or a Stripe fact: held together in one JSON text column (``PACKED``,
see ``packed.py``) instead of a column each. The served flags and ``customerId`` are derived from
some of them before they are packed."""
PACKED: Final = "_packed"
"""The packed fields of a row: a JSON object of its non-null values, null when all are null."""

CATEGORICAL_FIELDS: Final = (
    "eventId",
    "EventName",
    "TicketTypes",
    "PurchaseFrom",
    "ReferralCode",
    "sourceBucket",
    "referralCodeNormalized",
    "enrichmentState",
    "stripeRouteType",
    "stripeDestinationAccountId",
    "stripeDestinationAccountName",
    "depositStatus",
    "depositDate",
)
"""Text fields with few distinct values (events, sources, states, accounts, dates) that queries
read, held as categoricals: 4 bytes a row instead of a 16-byte view plus the text. They compare,
sort and group like text; ids and personal fields, unique per row, stay text."""

SERVED_FIELDS: Final = tuple(name for name in DOCUMENT_SCHEMA if not name.startswith("_"))
"""The fields of a transaction as the API serves it."""

REQUIRED_FIELDS: Final = ("id", "eventId", "PurchaseDate", "TotalTickets", "TotalAmount")
"""A document without one of these cannot be counted and is rejected with a reason."""

# Blank values of the fields every metric reads, as ingest would have stored them.
DEFAULTS: Final[dict[str, object]] = {
    **dict.fromkeys(("TotalScanCount", "TotalTicketRedeemed"), 0),
    **dict.fromkeys(("PlatformFee", "PaymentProviderFee", "TaxFee", "OrganizerAmount"), 0.0),
    **dict.fromkeys(_FLAG_FIELDS, False),
    "sourceBucket": "other",
    "searchText": "",
}

# Derived columns.
PURCHASED_AT: Final = "_purchasedAt"
"""PurchaseDate as a UTC instant (milliseconds)."""
REDEEMED_AT: Final = "_redeemedAt"
"""TicketRedemptionDateTime as a UTC instant, null when not redeemed."""
PURCHASE_QUARTER: Final = "_purchaseQuarter"
"""The UTC quarter-hour of the purchase (seconds since the epoch // 900): time-zone work groups by it."""
FEES: Final = "_fees"
"""PlatformFee + PaymentProviderFee + TaxFee."""
TICKET_TYPES_TEXT: Final = "_ticketTypesText"
"""The normalized ticket types as one text, each between two TYPE_SEPARATORs: a type filter is a
substring test, much faster than testing each row's list."""
TICKET_TYPES_TEXT_DTYPE: Final = pl.Categorical(pl.Categories("ticketTypesText", "query_api"))
"""Its own categories, so a ticket-type filter tests the few distinct texts, not every row's text."""
TYPE_SEPARATOR: Final = "\x1f"
"""Never inside a normalized type: normalization turns it, like all whitespace, into a space."""
SEARCH_KEY: Final = "_searchKey"
"""The row's number in the order rows arrived (a replaced row arrives again under a new one): the
search index lists rows by it (``searchindex``)."""
CUSTOMER_ID: Final = "customerId"
"""An opaque id of the buyer (a hash of customerKey, which holds personal data)."""
BUYER: Final = "_buyer"
"""``customerId`` (32 hex digits) as a 128-bit integer: the customer table groups and breaks ties
by it (integers hash and compare faster than text; the number orders as the text does)."""

TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.fZ"
"""How ingest stores timestamps: UTC ISO 8601, fixed width, ending in Z."""

QUARTER_HOUR_SECONDS: Final = 900
