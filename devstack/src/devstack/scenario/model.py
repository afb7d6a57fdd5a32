"""The generated world: organizers, events, ticket types and orders with their latent timeline."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from otcommon import schemas

# The export's columns are the data contract's, defined once in otcommon.schemas.
EXPORT_COLUMNS = schemas.EXPORT_COLUMNS

# Fields the OpenTickets API adds to each export row.
API_EXTRA_FIELDS: tuple[str, ...] = ("id", "eventId", "updatedAt")

TIMESTAMP_COLUMNS: frozenset[str] = frozenset(
    {"PurchaseDate", "TicketWasLastScannedTime", "TicketRedemptionDateTime"}
)
BOOLEAN_COLUMNS: frozenset[str] = frozenset({"IsRefunded", "IsValid", "IsDisputed"})
INTEGER_COLUMNS: frozenset[str] = frozenset({"SN", "TotalTickets", "TotalScanCount", "TotalTicketRedeemed"})
AMOUNT_COLUMNS: frozenset[str] = frozenset(
    {"TotalAmount", "ReferralCodeDiscount", "PlatformFee", "PaymentProviderFee", "TaxFee", "OrganizerAmount"}
)


class Route(enum.StrEnum):
    """Where a payment's Stripe objects live and how money reaches the organizer."""

    PLATFORM = "platform"
    DESTINATION = "destination"
    # Separate charges and transfers: a platform charge, then a `Transfer` to the organizer's account
    # naming the charge as its `source_transaction`, both in one `transfer_group`.
    SEPARATE_TRANSFER = "separate_transfer"
    DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class TicketType:
    """A ticket type of one event with its unit price in cents."""

    name: str
    price_cents: int


@dataclass(frozen=True, slots=True)
class ReferralCode:
    """A referral code an organizer hands out; kind is '%' or '$'."""

    code: str
    discount: int
    kind: str


@dataclass(frozen=True, slots=True)
class Organizer:
    """An organizer and the Stripe connected account that receives its money."""

    id: str
    name: str
    account_id: str
    manual_payouts: bool
    referral_codes: tuple[ReferralCode, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """One date of a tour."""

    id: str
    name: str
    tour_name: str
    city: str
    venue: str
    time_zone: str
    starts_at: int
    on_sale_at: int
    tax_rate_bp: int
    organizer_id: str
    ticket_types: tuple[TicketType, ...]
    # Cumulative popularity of the ticket types, in the same order, for weighted picks.
    type_cum_weights: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OrderLine:
    """Tickets of one type inside an order."""

    ticket_type: str
    quantity: int
    unit_cents: int


@dataclass(frozen=True, slots=True)
class Order:
    """One order with every fact it will ever have; times are Unix seconds (UTC).

    What a reader sees depends on the scenario clock: refunds, disputes and scans later than "now" are
    not yet visible, which is how advancing time produces late refunds and new scans.
    """

    index: int
    id: str
    event_id: str
    ticket_id: str
    name: str
    email: str
    phone: str
    lines: tuple[OrderLine, ...]
    total_cents: int
    purchase_at: int
    purchase_from: str
    payment_method: str
    payment_id: str
    referral_code: str | None
    referral_discount: int | None
    referral_discount_type: str | None
    platform_fee_cents: int
    provider_fee_cents: int
    tax_cents: int
    organizer_cents: int
    refund_at: int | None
    refund_remark: str | None
    dispute_at: int | None
    ticket_scans: tuple[int, ...]
    rescans: tuple[int, ...]
    route: Route | None
    account_id: str | None
    payment_intent_id: str | None
    charge_id: str | None

    @property
    def total_tickets(self) -> int:
        """Number of tickets across all lines."""
        return sum(line.quantity for line in self.lines)

    def updated_at(self, now: int) -> int:
        """Time of the latest fact visible at `now`."""
        latest = self.purchase_at
        if self.refund_at is not None and self.refund_at <= now:
            latest = max(latest, self.refund_at)
        if self.dispute_at is not None and self.dispute_at <= now:
            latest = max(latest, self.dispute_at)
        for scan in (*self.ticket_scans, *self.rescans):
            if latest < scan <= now:
                latest = scan
        return latest
