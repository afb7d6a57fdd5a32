"""Stripe `Event` objects for what changed in the world between two clock positions.

The scenario's Stripe world is rebuilt for each moment; comparing the world before a clock move with the
world after it gives Stripe's events for that move: new charges and PaymentIntents, refunds, disputes
opened, reviewed and closed, new transfers, new payouts and payout status changes. Connect events
(objects on a connected account) carry `account`. Event ids derive from what happened, so the same
moves give the same events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devstack.stripe.listing import SortedObjects

if TYPE_CHECKING:
    from devstack.scenario import StripeWorld

API_VERSION = "2020-08-27"
# Stripe's own event for each payout status a payout moves into.
DISPUTE_CLOSED_STATUSES = frozenset({"won", "lost", "warning_closed", "charge_refunded"})
PAYOUT_STATUS_EVENTS = {"paid": "payout.paid", "failed": "payout.failed", "canceled": "payout.canceled"}


def event_id(kind: str, object_id: str, detail: str = "") -> str:
    """A deterministic id for one change of one object."""
    digest = hashlib.sha256(f"{kind}:{object_id}:{detail}".encode()).hexdigest()
    return f"evt_1{digest[:23]}"


def _event(
    kind: str, obj: dict[str, Any], *, account: str | None, at: int, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    event: dict[str, Any] = {
        "id": event_id(kind, obj["id"], str(previous or "")),
        "object": "event",
        "api_version": API_VERSION,
        "created": at,
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }
    if account is not None:
        event["account"] = account
    return event


class _Changes:
    """Collects the events of one clock move."""

    def __init__(self, after: StripeWorld, *, at: int) -> None:
        self.after = after
        self.at = at
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        owner = self.after.owner[obj["id"]]
        account = None if owner == self.after.platform_account_id else owner
        self.events.append(_event(kind, obj, account=account, at=self.at, previous=previous))


def _payment_events(before: StripeWorld, after: StripeWorld, changes: _Changes) -> None:
    for intent_id in sorted(after.payment_intents.keys() - before.payment_intents.keys()):
        changes.emit("payment_intent.succeeded", after.payment_intents[intent_id])
    for charge_id, charge in sorted(after.charges.items()):
        if charge_id.startswith("py_"):
            continue  # a destination charge's arrival on the connected account is not a customer charge
        old = before.charges.get(charge_id)
        if old is None:
            changes.emit("charge.succeeded", charge)
        # Stripe sends charge.refunded for partial refunds too.
        if charge["amount_refunded"] and (old is None or not old["amount_refunded"]):
            changes.emit("charge.refunded", charge, {"refunded": False, "amount_refunded": 0})
    for refund_id in sorted(after.refunds.keys() - before.refunds.keys()):
        changes.emit("refund.created", after.refunds[refund_id])
    _dispute_events(before, after, changes)


def _dispute_events(before: StripeWorld, after: StripeWorld, changes: _Changes) -> None:
    for dispute_id, dispute in sorted(after.disputes.items()):
        old = before.disputes.get(dispute_id)
        if old is not None and old["status"] == dispute["status"]:
            continue
        if old is None:
            changes.emit("charge.dispute.created", dispute)
        else:
            changes.emit("charge.dispute.updated", dispute, {"status": old["status"]})
        if dispute["status"] in DISPUTE_CLOSED_STATUSES:
            changes.emit("charge.dispute.closed", dispute)


def _transfer_events(before: StripeWorld, after: StripeWorld, changes: _Changes) -> None:
    # A destination charge's transfer and a separate transfer alike; a late one comes hours after its charge.
    for transfer_id in sorted(after.transfers.keys() - before.transfers.keys()):
        changes.emit("transfer.created", after.transfers[transfer_id])


def _payout_events(before: StripeWorld, after: StripeWorld, changes: _Changes) -> None:
    for payout_id, payout in sorted(after.payouts.items()):
        old = before.payouts.get(payout_id)
        if old is not None and old["status"] == payout["status"]:
            continue
        if old is None:
            changes.emit("payout.created", payout)
        else:
            changes.emit("payout.updated", payout, {"status": old["status"]})
        if payout["status"] in PAYOUT_STATUS_EVENTS:
            changes.emit(PAYOUT_STATUS_EVENTS[payout["status"]], payout)


def world_changes(before: StripeWorld, after: StripeWorld, *, at: int) -> list[dict[str, Any]]:
    """The events that take the world from `before` to `after`, in a stable order."""
    changes = _Changes(after, at=at)
    _payment_events(before, after, changes)
    _transfer_events(before, after, changes)
    _payout_events(before, after, changes)
    return changes.events


@dataclass
class EventLog:
    """Every event so far, by id and per account (None: the platform), with delivery outcomes."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # event id -> endpoints still to deliver to, and endpoints that gave up after every attempt
    pending: dict[str, set[str]] = field(default_factory=dict)
    failed: dict[str, set[str]] = field(default_factory=dict)
    _by_account: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)
    _sorted: dict[str | None, SortedObjects] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> bool:
        """Keep a new event; False when an event with that id is already kept."""
        if event["id"] in self.events:
            return False
        self.events[event["id"]] = event
        account = event.get("account")
        self._by_account.setdefault(account, []).append(event)
        self._sorted.pop(account, None)
        return True

    def of_account(self, account: str | None) -> SortedObjects:
        """One account's events, sorted for paging."""
        found = self._sorted.get(account)
        if found is None:
            found = SortedObjects(self._by_account.get(account, []))
            self._sorted[account] = found
        return found

    def served(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as served now: `pending_webhooks` counts the deliveries not yet made."""
        return {**event, "pending_webhooks": len(self.pending.get(event["id"], ()))}

    def delivery_succeeded(self, event_id: str) -> bool:
        """Whether every endpoint has the event (Stripe's `delivery_success=true`)."""
        return not self.pending.get(event_id) and not self.failed.get(event_id)
