"""The refund and dispute flags the API serves: the source's flag combined with Stripe's fact.

The source (ingest) owns ``IsRefunded`` / ``IsDisputed``; the webhook service owns Stripe's facts
(``stripeRefundStatus``, ``stripeDisputeStatus``). Neither overwrites the other, and readers combine
them here, so one rule holds in every service:

- refunded when the source says so, or Stripe reports money refunded (a partial or full refund that
  is pending or succeeded; failed and canceled refunds do not count);
- disputed when the source says so, or Stripe reports a dispute that is open or lost (an inquiry
  that closed, or a dispute won or prevented, returned the money: it does not count).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

STRIPE_REFUNDED_STATUSES = frozenset({"partial", "full"})
STRIPE_DISPUTED_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost"}
)


def served_is_refunded(document: Mapping[str, Any]) -> bool:
    """``IsRefunded`` as served: the source's flag or Stripe's refund fact."""
    return (
        document.get("IsRefunded") is True or document.get("stripeRefundStatus") in STRIPE_REFUNDED_STATUSES
    )


def served_is_disputed(document: Mapping[str, Any]) -> bool:
    """``IsDisputed`` as served: the source's flag or Stripe's dispute fact."""
    return (
        document.get("IsDisputed") is True or document.get("stripeDisputeStatus") in STRIPE_DISPUTED_STATUSES
    )
