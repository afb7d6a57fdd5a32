"""What an order looks like to a reader at a given moment: an export/API row."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.scenario.model import Order


def iso_utc(ts: int) -> str:
    """Unix seconds as an ISO 8601 UTC timestamp with a Z suffix."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_iso_utc(text: str) -> int:
    """An ISO 8601 timestamp with an offset (or Z) as Unix seconds."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return int(parsed.astimezone(UTC).timestamp())


def _amount(cents: int) -> float:
    return cents / 100


def project_row(order: Order, *, event_name: str, now: int) -> dict[str, Any]:
    """The export fields plus id, eventId and updatedAt of `order` as visible at `now`."""
    refunded = order.refund_at is not None and order.refund_at <= now
    disputed = order.dispute_at is not None and order.dispute_at <= now
    redeemed = [scan for scan in order.ticket_scans if scan <= now]
    rescans = [scan for scan in order.rescans if scan <= now]
    last_scan = max((*redeemed, *rescans), default=None)
    return {
        "SN": order.index + 1,
        "EventName": event_name,
        "ticketId": order.ticket_id,
        "Name": order.name,
        "Email": order.email,
        "Phone": order.phone,
        "TicketTypes": ", ".join(line.ticket_type for line in order.lines),
        "TotalTickets": order.total_tickets,
        "TotalAmount": _amount(order.total_cents),
        "PurchaseDate": iso_utc(order.purchase_at),
        "PurchaseFrom": order.purchase_from,
        "IsRefunded": refunded,
        "RefundedRemarks": order.refund_remark if refunded else None,
        "IsValid": not (refunded or disputed),
        "IsDisputed": disputed,
        "ReferralCode": order.referral_code,
        "ReferralCodeDiscount": (
            float(order.referral_discount) if order.referral_discount is not None else None
        ),
        "ReferralCodeDiscountType": order.referral_discount_type,
        "PaymentMethod": order.payment_method,
        "PaymentID": order.payment_id,
        "TotalScanCount": len(redeemed) + len(rescans),
        "TotalTicketRedeemed": len(redeemed),
        "TicketWasLastScannedTime": iso_utc(last_scan) if last_scan is not None else None,
        "TicketRedemptionDateTime": iso_utc(redeemed[0]) if redeemed else None,
        "PlatformFee": _amount(order.platform_fee_cents),
        "PaymentProviderFee": _amount(order.provider_fee_cents),
        "TaxFee": _amount(order.tax_cents),
        "OrganizerAmount": _amount(order.organizer_cents),
        "id": order.id,
        "eventId": order.event_id,
        "updatedAt": iso_utc(order.updated_at(now)),
    }
