"""The refund and dispute flags the API serves: the source's flag combined with Stripe's fact.

The source (ingest) owns ``IsRefunded`` / ``IsDisputed``; the webhook service owns Stripe's facts
(``stripeRefundStatus``, ``stripeDisputeStatus``). Neither overwrites the other, and readers combine
them here, so one rule holds in every service:

- refunded when the source says so, or Stripe reports money refunded (a partial or full refund that
  is pending or succeeded; failed and canceled refunds do not count);
- disputed when the source says so, or Stripe reports a dispute that is open or lost (an inquiry
  that closed, or a dispute won or prevented, returned the money: it does not count);
- Stripe's facts count only while they describe the order's current payment: the webhook service
  stamps them with the ``PaymentID`` they were written for (``stripeFactsPaymentId``). When the
  source re-points the order to another payment, the old payment's refunds and disputes stop
  counting at once (ingest keeps them, as it keeps every field it does not own), and the webhook
  service clears them with its next write for the new payment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

STRIPE_FACTS_PAYMENT_FIELD = "stripeFactsPaymentId"
"""The ``PaymentID`` the webhook service's refund and dispute facts were written for."""

STRIPE_REFUNDED_STATUSES = frozenset({"partial", "full"})
STRIPE_DISPUTED_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost"}
)


def stripe_facts_are_current(document: Mapping[str, Any]) -> bool:
    """Whether the Stripe facts on the document were written for its current ``PaymentID``."""
    payment_id = document.get("PaymentID")
    return bool(payment_id) and document.get(STRIPE_FACTS_PAYMENT_FIELD) == payment_id


def served_is_refunded(document: Mapping[str, Any]) -> bool:
    """``IsRefunded`` as served: the source's flag or Stripe's refund fact about the current payment."""
    if document.get("IsRefunded") is True:
        return True
    refunded = document.get("stripeRefundStatus") in STRIPE_REFUNDED_STATUSES
    return refunded and stripe_facts_are_current(document)


def served_is_disputed(document: Mapping[str, Any]) -> bool:
    """``IsDisputed`` as served: the source's flag or Stripe's dispute fact about the current payment."""
    if document.get("IsDisputed") is True:
        return True
    disputed = document.get("stripeDisputeStatus") in STRIPE_DISPUTED_STATUSES
    return disputed and stripe_facts_are_current(document)
