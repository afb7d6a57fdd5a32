"""Stripe-shaped JSON for the scenario's Stripe side: one function per object type.

Each function only shapes an object from facts already decided (ids, amounts, times, owners); which
objects exist and on which account is `stripe_world`'s business. Keys are in the order Stripe's own
responses use, so a stand-in can serve these dicts as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.scenario.model import Route
from devstack.scenario.world import DAY

if TYPE_CHECKING:
    from devstack.scenario.world import AccountProfile

# Disputes give the merchant a week to answer; the card network then decides within two more weeks.
DISPUTE_EVIDENCE_DAYS = 7
DISPUTE_REVIEW_DAYS = 14

_NO_BILLING_DETAILS: dict[str, Any] = {"address": None, "email": None, "name": None, "phone": None}


@dataclass(frozen=True, slots=True)
class StripePayment:
    """One order's card payment as Stripe records it at one moment; times are Unix seconds."""

    order_id: str
    event_id: str
    route: Route
    # The account the charge lives on; `destination` receives the transfer of a destination charge or of
    # a separate transfer.
    owner: str
    destination: str | None
    charge_id: str
    payment_intent_id: str | None
    amount: int
    stripe_fee: int
    # What the platform keeps: its fee plus the tax it collects.
    application_fee: int
    created: int
    # Set only once the refund or dispute has happened by that moment.
    refunded_at: int | None
    disputed_at: int | None

    @property
    def refunded_amount(self) -> int:
        """What was refunded: nothing, the whole amount, or for about one refund in three half of it."""
        if self.refunded_at is None:
            return 0
        # Decided by the charge alone, so the same payment is always refunded the same way.
        partial = hashlib.sha256(self.charge_id.encode()).digest()[0] % 3 == 0
        return self.amount // 2 if partial else self.amount

    @property
    def application_fee_amount(self) -> int | None:
        """Stripe's `application_fee_amount`: only direct and destination charges carry one.

        A separate transfer's platform keeps its share by transferring less: the charge has no fee.
        """
        return self.application_fee if self.route in {Route.DESTINATION, Route.DIRECT} else None

    @property
    def transferred(self) -> int:
        """What a destination charge or a separate transfer moves to the connected account."""
        return self.amount - self.application_fee

    @property
    def metadata(self) -> dict[str, str]:
        """The metadata OpenTickets puts on its charges and PaymentIntents."""
        return {"order_id": self.order_id, "event_id": self.event_id}

    @property
    def transfer_data(self) -> dict[str, str] | None:
        """Stripe's `transfer_data` of a destination charge."""
        if self.route is not Route.DESTINATION or self.destination is None:
            return None
        return {"destination": self.destination}

    @property
    def on_behalf_of(self) -> str | None:
        """The account a destination charge settles for; a separate transfer's charge names none."""
        return self.destination if self.route is Route.DESTINATION else None

    @property
    def transfer_group(self) -> str | None:
        """The group a separate transfer shares with its charge (OpenTickets names it after the order)."""
        return f"order_{self.order_id}" if self.route is Route.SEPARATE_TRANSFER else None


def empty_list(url: str) -> dict[str, Any]:
    """A Stripe list object with nothing in it yet."""
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


def fee_detail(amount: int, kind: str) -> dict[str, Any]:
    """One entry of a balance transaction's `fee_details`."""
    return {"amount": amount, "currency": "usd", "type": kind, "description": None}


def account(profile: AccountProfile, *, manual: bool, created: int) -> dict[str, Any]:
    """An account, with the payout schedule its organizer chose."""
    return {
        "id": profile.id,
        "object": "account",
        "type": "standard",
        "country": profile.country,
        "default_currency": "usd",
        "email": profile.email,
        "created": created,
        "charges_enabled": True,
        "payouts_enabled": True,
        "business_profile": {"name": profile.business_name},
        "settings": {
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_payments": {
                "decline_on": {"avs_failure": True, "cvc_failure": True},
                "statement_descriptor_prefix": None,
            },
            "dashboard": {"display_name": profile.display_name, "timezone": "Etc/UTC"},
            "payments": {"statement_descriptor": None},
            "payouts": {
                "debit_negative_balances": True,
                "schedule": {"interval": "manual" if manual else "daily", "delay_days": 2},
                "statement_descriptor": None,
            },
        },
        "metadata": {},
    }


def bank_account(*, bank_id: str, account_id: str, bank_name: str, last4: str) -> dict[str, Any]:
    """The verified bank account an account's payouts go to."""
    return {
        "id": bank_id,
        "object": "bank_account",
        "account": account_id,
        "bank_name": bank_name,
        "last4": last4,
        "country": "US",
        "currency": "usd",
        "routing_number": "110000000",
        "status": "verified",
        "default_for_currency": True,
    }


def balance_transaction(
    *,
    txn_id: str,
    amount: int,
    fee_details: list[dict[str, Any]],
    source: str,
    created: int,
    available_on: int,
    status: str,
) -> dict[str, Any]:
    """A balance transaction; its fee is the sum of its fee details, as on Stripe."""
    fee = sum(detail["amount"] for detail in fee_details)
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "fee": fee,
        "net": amount - fee,
        "currency": "usd",
        "created": created,
        "available_on": available_on,
        "status": status,
        # A destination charge's money arrives on the connected account as a `py_` payment.
        "type": "payment" if source.startswith("py_") else "charge",
        "reporting_category": "charge",
        "source": source,
        "fee_details": fee_details,
    }


def transfer(
    payment: StripePayment, *, transfer_id: str, destination_payment_id: str, created: int
) -> dict[str, Any]:
    """The transfer of a destination charge, or a separate transfer, to the connected account.

    Both name the platform charge as `source_transaction`: a separate transfer is made with it, so the
    money becomes available to the connected account when the charge's does.
    """
    return {
        "id": transfer_id,
        "object": "transfer",
        "amount": payment.transferred,
        "amount_reversed": 0,
        "livemode": False,
        "reversals": empty_list(f"/v1/transfers/{transfer_id}/reversals"),
        "currency": "usd",
        "created": created,
        "destination": payment.destination,
        "destination_payment": destination_payment_id,
        "source_transaction": payment.charge_id,
        "source_type": "card",
        "transfer_group": payment.transfer_group,
        "reversed": False,
        "metadata": {},
    }


def destination_payment(
    payment: StripePayment, *, charge_id: str, balance_transaction_id: str, transfer_id: str, created: int
) -> dict[str, Any]:
    """The `py_` charge a transfer creates on the connected account (at the transfer's `created`)."""
    return {
        "id": charge_id,
        "object": "charge",
        "billing_details": dict(_NO_BILLING_DETAILS),
        "refunds": empty_list(f"/v1/charges/{charge_id}/refunds"),
        "amount": payment.transferred,
        "amount_captured": payment.transferred,
        "amount_refunded": 0,
        "currency": "usd",
        "created": created,
        "paid": True,
        "captured": True,
        "status": "succeeded",
        "payment_intent": None,
        "balance_transaction": balance_transaction_id,
        "source_transfer": transfer_id,
        "refunded": False,
        "disputed": False,
        "livemode": False,
        "metadata": {},
    }


def charge(payment: StripePayment, *, balance_transaction_id: str, transfer_id: str | None) -> dict[str, Any]:
    """The customer's card charge."""
    charge: dict[str, Any] = {
        "id": payment.charge_id,
        "object": "charge",
        "billing_details": dict(_NO_BILLING_DETAILS),
        "refunds": empty_list(f"/v1/charges/{payment.charge_id}/refunds"),
        "amount": payment.amount,
        "amount_captured": payment.amount,
        "amount_refunded": payment.refunded_amount,
        "currency": "usd",
        "created": payment.created,
        "paid": True,
        "captured": True,
        "status": "succeeded",
        "payment_intent": payment.payment_intent_id,
        "balance_transaction": balance_transaction_id,
        "transfer": transfer_id,
        "transfer_data": payment.transfer_data,
        "transfer_group": payment.transfer_group,
        "on_behalf_of": payment.on_behalf_of,
        "application_fee_amount": payment.application_fee_amount,
        # Set once the application fee exists (`stripe_world` draws its id after the charge's).
        "application_fee": None,
        # Stripe marks a charge refunded only once all of it is; a partial refund leaves it false.
        "refunded": payment.refunded_amount == payment.amount,
        "disputed": payment.disputed_at is not None,
        "livemode": False,
        "metadata": payment.metadata,
    }
    if transfer_id is None:
        # Stripe leaves `transfer` out of a charge that made none (the field is never null).
        del charge["transfer"]
    return charge


def application_fee(
    payment: StripePayment, *, fee_id: str, application_id: str, paid_by: str, charge_id: str
) -> dict[str, Any]:
    """The platform's fee on a connected payment, as the platform lists it.

    `paid_by` is the connected account the fee came from; `charge_id` the charge on that account (a
    destination charge's `py_` payment, whose platform charge is the originating transaction).
    """
    amount = payment.application_fee_amount or 0
    return {
        "id": fee_id,
        "object": "application_fee",
        "account": paid_by,
        "amount": amount,
        "amount_refunded": 0,
        "application": application_id,
        "balance_transaction": None,
        "charge": charge_id,
        "created": payment.created,
        "currency": "usd",
        "livemode": False,
        "originating_transaction": payment.charge_id if payment.route is Route.DESTINATION else None,
        "refunded": False,
        "refunds": empty_list(f"/v1/application_fees/{fee_id}/refunds"),
    }


def payment_intent(payment: StripePayment, *, intent_id: str) -> dict[str, Any]:
    """The succeeded PaymentIntent behind a charge."""
    return {
        "id": intent_id,
        "object": "payment_intent",
        "capture_method": "automatic",
        "confirmation_method": "automatic",
        "amount": payment.amount,
        "amount_received": payment.amount,
        "currency": "usd",
        "created": payment.created,
        "status": "succeeded",
        "latest_charge": payment.charge_id,
        "transfer_data": payment.transfer_data,
        "transfer_group": payment.transfer_group,
        "on_behalf_of": payment.on_behalf_of,
        "application_fee_amount": payment.application_fee_amount,
        "payment_method_types": ["card"],
        "livemode": False,
        "metadata": payment.metadata,
    }


def refund(payment: StripePayment, *, refund_id: str, created: int) -> dict[str, Any]:
    """The refund of the charge, full or partial."""
    return {
        "id": refund_id,
        "object": "refund",
        "amount": payment.refunded_amount,
        "charge": payment.charge_id,
        "payment_intent": payment.payment_intent_id,
        "currency": "usd",
        "created": created,
        "reason": "requested_by_customer",
        "status": "succeeded",
        "metadata": {},
    }


def dispute_status(*, dispute_id: str, created: int, now: int) -> str:
    """Where a dispute stands at `now`: waiting for evidence, under the bank's review, then won or lost."""
    if now < created + DISPUTE_EVIDENCE_DAYS * DAY:
        return "needs_response"
    if now < created + (DISPUTE_EVIDENCE_DAYS + DISPUTE_REVIEW_DAYS) * DAY:
        return "under_review"
    # The outcome depends only on the dispute, so every clock path reaches the same one.
    return "won" if hashlib.sha256(dispute_id.encode()).digest()[0] % 2 else "lost"


def dispute(payment: StripePayment, *, dispute_id: str, created: int, now: int) -> dict[str, Any]:
    """A fraud dispute of the whole charge, as it stands at `now`."""
    status = dispute_status(dispute_id=dispute_id, created=created, now=now)
    answered = status != "needs_response"
    return {
        "id": dispute_id,
        "object": "dispute",
        "balance_transactions": [],
        "evidence": {},
        "evidence_details": {
            "due_by": created + DISPUTE_EVIDENCE_DAYS * DAY,
            "has_evidence": answered,
            "past_due": False,
            "submission_count": 1 if answered else 0,
        },
        "is_charge_refundable": False,
        "amount": payment.amount,
        "charge": payment.charge_id,
        "payment_intent": payment.payment_intent_id,
        "currency": "usd",
        "created": created,
        "reason": "fraudulent",
        "status": status,
        "livemode": False,
        "metadata": {},
    }


def payout(
    *,
    payout_id: str,
    amount: int,
    created: int,
    arrival_date: int,
    automatic: bool,
    bank_id: str,
    status: str,
) -> dict[str, Any]:
    """A payout to the account's bank; a failed one says why, as Stripe does."""
    failed = status == "failed"
    return {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "currency": "usd",
        "created": created,
        "arrival_date": arrival_date,
        "automatic": automatic,
        "destination": bank_id,
        "method": "standard",
        "type": "bank_account",
        "source_type": "card",
        "status": status,
        "failure_code": "account_closed" if failed else None,
        "failure_message": "The bank account has been closed." if failed else None,
        "statement_descriptor": None,
        "livemode": False,
        "metadata": {},
    }
