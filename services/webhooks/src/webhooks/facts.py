"""Stripe's refund and dispute facts on a transaction: merged per Stripe object, never older over newer.

Stripe does not order events. Each refund and each dispute is kept per object id with the version
that wrote it: the event's ``created`` (seconds), then the rank of the object's status (a refund or
dispute only moves forward through its statuses, so within one second the later status wins). An
event whose version is not newer than the stored one changes nothing. From the per-object facts the
summary fields are derived; every field here is the webhook service's alone (SPEC section 2).

The facts are stamped with the ``PaymentID`` they were written for. When the source re-points an
order to another payment, the stored facts describe the old one: readers stop counting them
(``otcommon.served``), and the next event about the new payment starts from no facts, clearing the
old payment's refund and dispute fields in the same write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from otcommon.served import STRIPE_FACTS_PAYMENT_FIELD

if TYPE_CHECKING:
    from collections.abc import Callable

REFUNDS_FIELD = "stripeRefunds"
CHARGE_REFUNDS_FIELD = "stripeChargeRefunds"
REFUNDED_AMOUNT_FIELD = "stripeRefundedAmount"
REFUND_STATUS_FIELD = "stripeRefundStatus"
REFUND_STATE_AT_FIELD = "stripeRefundStateAt"
DISPUTES_FIELD = "stripeDisputes"
DISPUTE_STATUS_FIELD = "stripeDisputeStatus"
DISPUTE_REASON_FIELD = "stripeDisputeReason"
DISPUTE_STATE_AT_FIELD = "stripeDisputeStateAt"
REFUND_FACT_FIELDS = (
    REFUNDS_FIELD,
    CHARGE_REFUNDS_FIELD,
    REFUNDED_AMOUNT_FIELD,
    REFUND_STATUS_FIELD,
    REFUND_STATE_AT_FIELD,
)
DISPUTE_FACT_FIELDS = (DISPUTES_FIELD, DISPUTE_STATUS_FIELD, DISPUTE_REASON_FIELD, DISPUTE_STATE_AT_FIELD)
STRIPE_FACT_FIELDS = (*REFUND_FACT_FIELDS, *DISPUTE_FACT_FIELDS, STRIPE_FACTS_PAYMENT_FIELD)
"""Every field the webhook service writes into a transaction, and no other."""

_REFUND_RANK = {"pending": 0, "requires_action": 1, "succeeded": 2, "failed": 3, "canceled": 3}
_DISPUTE_RANK = {
    "warning_needs_response": 0,
    "warning_under_review": 1,
    "warning_closed": 2,
    "needs_response": 3,
    "under_review": 4,
    "won": 5,
    "lost": 5,
    "prevented": 5,
}
# Money that has left, or is leaving, the organizer: a failed or canceled refund gave it back.
_COUNTED_REFUND_STATUSES = frozenset({"pending", "requires_action", "succeeded"})
# Stripe's currencies without minor units: amounts are already in major units.
_ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905 - reads as a list
)


@dataclass(frozen=True, slots=True)
class Version:
    """The version of one Stripe object's state: the event's time, then the status's rank."""

    event_created: int
    rank: int
    event_id: str

    def is_newer_than(self, stored: dict[str, Any] | None) -> bool:
        """Whether this state may replace ``stored`` (None: nothing stored yet)."""
        if stored is None:
            return True
        mine = (self.event_created, self.rank)
        theirs = (int(stored.get("eventCreated", 0)), int(stored.get("rank", -1)))
        return mine > theirs


@dataclass(frozen=True, slots=True)
class Merge:
    """What merging one event's object did: the new fields (None: nothing newer), or already stored."""

    fields: dict[str, Any] | None
    already_applied: bool = False


def _current_facts(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document as a merge sees it, and the fields its write must clear.

    Facts stamped with another payment (or none) are the old payment's: the merge starts without them,
    and the write clears every one that is stored and stamps the current payment.
    """
    payment_id = document.get("PaymentID")
    if document.get(STRIPE_FACTS_PAYMENT_FIELD) == payment_id:
        return document, {}
    stale = {name: None for name in STRIPE_FACT_FIELDS if document.get(name) is not None}
    view = {name: value for name, value in document.items() if name not in stale}
    return view, {**stale, STRIPE_FACTS_PAYMENT_FIELD: payment_id}


def to_major_units(amount: int, currency: str) -> float:
    """Stripe's minor units as the currency's major units, like ``TotalAmount``."""
    return float(amount) if currency.lower() in _ZERO_DECIMAL else round(amount / 100, 2)


def _iso(created: int) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat()


def _entry(version: Version, **values: Any) -> dict[str, Any]:
    return {
        **values,
        "eventCreated": version.event_created,
        "rank": version.rank,
        "eventId": version.event_id,
    }


def _already(stored: dict[str, Any] | None, version: Version) -> bool:
    return stored is not None and stored.get("eventId") == version.event_id


def _merge(
    document: dict[str, Any],
    version: Version,
    *,
    stored: Callable[[dict[str, Any]], dict[str, Any] | None],
    written: Callable[[dict[str, Any]], dict[str, Any]],
) -> Merge:
    """The steps every merge shares: the current payment's facts only, once per event, newer over older.

    ``stored`` picks the entry this event's object has in the facts (None: none yet); ``written``
    gives the fields to write from the facts as the merge sees them. Both get the document without
    the old payment's facts when the order was re-pointed, and the write then clears those.
    """
    view, cleared = _current_facts(document)
    current = stored(view)
    if _already(current, version):
        return Merge(None, already_applied=True)
    if not version.is_newer_than(current):
        return Merge(None)
    return Merge({**cleared, **written(view)})


def merge_refund(document: dict[str, Any], refund: dict[str, Any], *, event_id: str, created: int) -> Merge:
    """Fold one refund object into the transaction's refund facts."""
    status = str(refund.get("status") or "pending")
    version = Version(created, _REFUND_RANK.get(status, 0), event_id)

    def written(view: dict[str, Any]) -> dict[str, Any]:
        entry = _entry(
            version,
            amount=int(refund.get("amount") or 0),
            currency=str(refund.get("currency") or ""),
            status=status,
        )
        refunds = {**(view.get(REFUNDS_FIELD) or {}), refund["id"]: entry}
        return {REFUNDS_FIELD: refunds, **_refund_summary(view, refunds, view.get(CHARGE_REFUNDS_FIELD))}

    return _merge(
        document,
        version,
        stored=lambda view: (view.get(REFUNDS_FIELD) or {}).get(refund["id"]),
        written=written,
    )


def merge_charge_refunds(
    document: dict[str, Any], charge: dict[str, Any], *, event_id: str, created: int
) -> Merge:
    """Fold a charge's ``amount_refunded`` (``charge.refunded``) into the refund facts."""
    amount_refunded = int(charge.get("amount_refunded") or 0)
    version = Version(created, amount_refunded, event_id)

    def written(view: dict[str, Any]) -> dict[str, Any]:
        snapshot = _entry(
            version,
            amountRefunded=amount_refunded,
            amount=int(charge.get("amount") or 0),
            currency=str(charge.get("currency") or ""),
        )
        refunds = dict(view.get(REFUNDS_FIELD) or {})
        return {CHARGE_REFUNDS_FIELD: snapshot, **_refund_summary(view, refunds, snapshot)}

    return _merge(document, version, stored=lambda view: view.get(CHARGE_REFUNDS_FIELD), written=written)


def _refund_summary(
    document: dict[str, Any], refunds: dict[str, Any], snapshot: dict[str, Any] | None
) -> dict[str, Any]:
    """The derived refund fields: the newest source wins (the charge's total, or the refunds' sum)."""
    newest_refund = max((int(entry["eventCreated"]) for entry in refunds.values()), default=-1)
    currency = next((str(entry["currency"]) for entry in refunds.values()), "")
    if snapshot is not None and int(snapshot["eventCreated"]) >= newest_refund:
        refunded = int(snapshot["amountRefunded"])
        currency = str(snapshot["currency"]) or currency
        state_at = int(snapshot["eventCreated"])
    else:
        refunded = sum(int(e["amount"]) for e in refunds.values() if e["status"] in _COUNTED_REFUND_STATUSES)
        state_at = newest_refund
    major = to_major_units(refunded, currency)
    charge_amount = int(snapshot["amount"]) if snapshot else 0
    whole = refunded >= charge_amount if charge_amount else major >= float(document.get("TotalAmount") or 0)
    status = "none" if refunded <= 0 else ("full" if whole else "partial")
    return {
        REFUNDED_AMOUNT_FIELD: major,
        REFUND_STATUS_FIELD: status,
        REFUND_STATE_AT_FIELD: _iso(state_at),
    }


def merge_dispute(document: dict[str, Any], dispute: dict[str, Any], *, event_id: str, created: int) -> Merge:
    """Fold one dispute object into the transaction's dispute facts."""
    status = str(dispute.get("status") or "needs_response")
    version = Version(created, _DISPUTE_RANK.get(status, 0), event_id)

    def written(view: dict[str, Any]) -> dict[str, Any]:
        entry = _entry(
            version,
            status=status,
            reason=dispute.get("reason"),
            amount=int(dispute.get("amount") or 0),
            currency=str(dispute.get("currency") or ""),
        )
        disputes = {**(view.get(DISPUTES_FIELD) or {}), dispute["id"]: entry}
        latest = max(disputes.values(), key=lambda each: (int(each["eventCreated"]), int(each["rank"])))
        return {
            DISPUTES_FIELD: disputes,
            DISPUTE_STATUS_FIELD: latest["status"],
            DISPUTE_REASON_FIELD: latest["reason"],
            DISPUTE_STATE_AT_FIELD: _iso(int(latest["eventCreated"])),
        }

    return _merge(
        document,
        version,
        stored=lambda view: (view.get(DISPUTES_FIELD) or {}).get(dispute["id"]),
        written=written,
    )
