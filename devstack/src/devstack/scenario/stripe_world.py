# ruff: noqa: S311 - seeded, reproducible pseudo-randomness is the point; nothing here is a secret
"""The Stripe side of a scenario: accounts, payments, balance transactions, transfers and payouts.

Objects are Stripe-shaped JSON dicts keyed by id, so a Stripe stand-in can serve them as they are;
`owner` says which account can read each object, and `payments` is the ground truth the enricher's
answers are checked against.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from devstack.scenario import catalog
from devstack.scenario.ids import seed_salt, stripe_id
from devstack.scenario.model import Order, Route
from devstack.scenario.world import DAY, AccountProfile, account_fragment

if TYPE_CHECKING:
    from devstack.scenario.generator import Scenario

# Stripe makes card funds available two days after the charge, then pays out the next business day.
AVAILABLE_AFTER_DAYS = 2
PAYOUT_PENDING_SECONDS = 6 * 3600
FAILED_PAYOUT_PERCENT = 3
MANUAL_PAYOUT_EVERY_DAYS = 7
_SATURDAY = 5
_SALT_TXN = 0x11
_SALT_PY = 0x22
_SALT_TXN_PY = 0x33
_SALT_TR = 0x44
_SALT_RE = 0x55
_SALT_DP = 0x66
_SALT_PO = 0x77


class _Money(NamedTuple):
    amount: int
    fee: int


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """Where one export PaymentID lives in Stripe and how its money moves."""

    payment_id: str
    order_id: str
    route: Route
    account_id: str
    destination_account_id: str | None
    charge_id: str
    payment_intent_id: str | None
    balance_transaction_id: str
    transfer_id: str | None
    destination_payment_id: str | None
    application_fee_amount: int | None
    net_amount: int
    available_on: int


@dataclass
class StripeWorld:
    """Every Stripe object of a scenario at one moment, keyed by id."""

    platform_account_id: str
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    bank_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance_transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    payouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Balance transactions each automatic payout settled; Stripe answers this for
    # `GET /v1/balance_transactions?payout=po_...` and nowhere else.
    payout_balance_transactions: dict[str, list[str]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    payments: dict[str, PaymentFacts] = field(default_factory=dict)

    def account_name(self, account_id: str) -> str:
        """The name Stripe's dashboard would show: business name, display name, email, else the id."""
        account = self.accounts[account_id]
        return str(
            account["business_profile"]["name"]
            or account["settings"]["dashboard"]["display_name"]
            or account["email"]
            or account_id
        )

    def objects_of(self, account_id: str) -> dict[str, dict[str, Any]]:
        """Every object readable with this account's credentials."""
        everything: dict[str, dict[str, Any]] = {}
        for table in (
            self.bank_accounts,
            self.payment_intents,
            self.charges,
            self.balance_transactions,
            self.transfers,
            self.refunds,
            self.disputes,
            self.payouts,
        ):
            everything.update({key: obj for key, obj in table.items() if self.owner[key] == account_id})
        return everything


_NO_BILLING_DETAILS: dict[str, Any] = {"address": None, "email": None, "name": None, "phone": None}


def _empty_list(url: str) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


def _account_object(profile: AccountProfile, *, manual: bool, created: int) -> dict[str, Any]:
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
            "dashboard": {"display_name": profile.display_name, "timezone": "Etc/UTC"},
            "payouts": {"schedule": {"interval": "manual" if manual else "daily", "delay_days": 2}},
        },
        "metadata": {},
    }


def _day_start(ts: int) -> int:
    return ts - ts % DAY


def _arrival(created: int) -> int:
    arrival = created + DAY
    weekday = (arrival // DAY + 3) % 7  # 1970-01-01 was a Thursday
    if weekday >= _SATURDAY:
        arrival += (7 - weekday) * DAY
    return arrival


class _Builder:
    def __init__(self, scenario: Scenario) -> None:
        world = scenario.world
        self.scenario = scenario
        self.now = scenario.now
        self.seed = world.seed
        self.stripe = StripeWorld(platform_account_id=world.platform.id)
        self.manual = {o.account_id for o in world.organizers if o.manual_payouts}
        self.bank_of: dict[str, str] = {}
        # (account, payout day) -> balance transactions paid out together
        self.pending_payouts: dict[tuple[str, int], list[str]] = defaultdict(list)
        rng = random.Random(f"stripe-accounts:{world.seed}")
        created = world.start - 400 * DAY
        for profile in (world.platform, *world.accounts):
            manual = profile.id in self.manual
            self.stripe.accounts[profile.id] = _account_object(profile, manual=manual, created=created)
            bank_id = f"ba_1{account_fragment(profile.id)}{rng.randrange(10**12):012d}"[:27]
            self.stripe.bank_accounts[bank_id] = {
                "id": bank_id,
                "object": "bank_account",
                "account": profile.id,
                "bank_name": rng.choice(catalog.BANK_NAMES),
                "last4": f"{rng.randrange(10_000):04d}",
                "country": "US",
                "currency": "usd",
                "routing_number": "110000000",
                "status": "verified",
                "default_for_currency": True,
            }
            self.stripe.owner[bank_id] = profile.id
            self.bank_of[profile.id] = bank_id

    def _put(self, table: dict[str, dict[str, Any]], obj: dict[str, Any], *, owner: str) -> None:
        table[obj["id"]] = obj
        self.stripe.owner[obj["id"]] = owner

    def _balance(
        self, *, txn_id: str, owner: str, money: _Money, source: str, created: int
    ) -> dict[str, Any]:
        amount, fee = money
        # A destination charge's money arrives on the connected account as a `py_` payment.
        kind = "payment" if source.startswith("py_") else "charge"
        available_on = _day_start(created) + AVAILABLE_AFTER_DAYS * DAY
        txn = {
            "id": txn_id,
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": "usd",
            "created": created,
            "available_on": available_on,
            "status": "available" if available_on <= self.now else "pending",
            "type": kind,
            "reporting_category": "charge",
            "source": source,
            "fee_details": [{"amount": fee, "currency": "usd", "type": "stripe_fee", "description": None}],
        }
        self._put(self.stripe.balance_transactions, txn, owner=owner)
        if owner in self.manual:
            # Manual payouts are requested by the organizer in weekly batches.
            week = (available_on // DAY + MANUAL_PAYOUT_EVERY_DAYS - 1) // MANUAL_PAYOUT_EVERY_DAYS
            self.pending_payouts[(owner, week * MANUAL_PAYOUT_EVERY_DAYS * DAY)].append(txn_id)
        else:
            self.pending_payouts[(owner, available_on)].append(txn_id)
        return txn

    def add_order(self, order: Order) -> None:
        if order.route is None or order.account_id is None or order.charge_id is None:
            return
        world = self.scenario.world
        rng = random.Random(f"stripe:{self.seed}:{order.index}")
        organizer_account = world.organizer(world.event(order.event_id).organizer_id).account_id
        owner = order.account_id
        refunded = order.refund_at is not None and order.refund_at <= self.now
        disputed = order.dispute_at is not None and order.dispute_at <= self.now
        amount = order.total_cents
        stripe_fee = order.provider_fee_cents
        application_fee = order.platform_fee_cents + order.tax_cents
        created = order.purchase_at

        def new_id(prefix: str, salt: int, account: str = owner) -> str:
            return stripe_id(
                prefix=prefix,
                index=order.index,
                salt=seed_salt(self.seed, salt),
                account_fragment=account_fragment(account),
                rng=rng,
            )

        destination = organizer_account if order.route is Route.DESTINATION else None
        transfer_id = destination_payment_id = None
        if order.route is Route.DIRECT:
            # On a direct charge the platform's application fee is taken from the connected balance.
            txn = self._balance(
                txn_id=new_id("txn", _SALT_TXN),
                owner=owner,
                money=_Money(amount, stripe_fee + application_fee),
                source=order.charge_id,
                created=created,
            )
            txn["fee_details"] = [
                {"amount": stripe_fee, "currency": "usd", "type": "stripe_fee", "description": None},
                {
                    "amount": application_fee,
                    "currency": "usd",
                    "type": "application_fee",
                    "description": None,
                },
            ]
        else:
            txn = self._balance(
                txn_id=new_id("txn", _SALT_TXN),
                owner=owner,
                money=_Money(amount, stripe_fee),
                source=order.charge_id,
                created=created,
            )
        fee_amount: int | None = application_fee if order.route is not Route.PLATFORM else None
        net = txn["net"]
        if destination is not None:
            transfer_id = new_id("tr", _SALT_TR)
            destination_payment_id = new_id("py", _SALT_PY, destination)
            transferred = amount - application_fee
            self._put(
                self.stripe.transfers,
                {
                    "id": transfer_id,
                    "object": "transfer",
                    "amount": transferred,
                    "amount_reversed": 0,
                    "livemode": False,
                    "reversals": _empty_list(f"/v1/transfers/{transfer_id}/reversals"),
                    "currency": "usd",
                    "created": created,
                    "destination": destination,
                    "destination_payment": destination_payment_id,
                    "source_transaction": order.charge_id,
                    "reversed": False,
                    "metadata": {},
                },
                owner=owner,
            )
            py_txn = self._balance(
                txn_id=new_id("txn", _SALT_TXN_PY, destination),
                owner=destination,
                money=_Money(transferred, 0),
                source=destination_payment_id,
                created=created,
            )
            self._put(
                self.stripe.charges,
                {
                    "id": destination_payment_id,
                    "object": "charge",
                    "billing_details": dict(_NO_BILLING_DETAILS),
                    "refunds": _empty_list(f"/v1/charges/{destination_payment_id}/refunds"),
                    "amount": transferred,
                    "amount_captured": transferred,
                    "amount_refunded": 0,
                    "currency": "usd",
                    "created": created,
                    "paid": True,
                    "captured": True,
                    "status": "succeeded",
                    "payment_intent": None,
                    "balance_transaction": py_txn["id"],
                    "source_transfer": transfer_id,
                    "refunded": False,
                    "disputed": False,
                    "livemode": False,
                    "metadata": {},
                },
                owner=destination,
            )
            net = py_txn["net"]

        transfer_data = {"destination": destination} if destination else None
        self._put(
            self.stripe.charges,
            {
                "id": order.charge_id,
                "object": "charge",
                "billing_details": dict(_NO_BILLING_DETAILS),
                "refunds": _empty_list(f"/v1/charges/{order.charge_id}/refunds"),
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": amount if refunded else 0,
                "currency": "usd",
                "created": created,
                "paid": True,
                "captured": True,
                "status": "succeeded",
                "payment_intent": order.payment_intent_id,
                "balance_transaction": txn["id"],
                "transfer": transfer_id,
                "transfer_data": transfer_data,
                "on_behalf_of": destination,
                "application_fee_amount": fee_amount,
                "refunded": refunded,
                "disputed": disputed,
                "livemode": False,
                "metadata": {"order_id": order.id, "event_id": order.event_id},
            },
            owner=owner,
        )
        if order.payment_intent_id is not None:
            self._put(
                self.stripe.payment_intents,
                {
                    "id": order.payment_intent_id,
                    "object": "payment_intent",
                    "capture_method": "automatic",
                    "confirmation_method": "automatic",
                    "amount": amount,
                    "amount_received": amount,
                    "currency": "usd",
                    "created": created,
                    "status": "succeeded",
                    "latest_charge": order.charge_id,
                    "transfer_data": transfer_data,
                    "on_behalf_of": destination,
                    "application_fee_amount": fee_amount,
                    "payment_method_types": ["card"],
                    "livemode": False,
                    "metadata": {"order_id": order.id, "event_id": order.event_id},
                },
                owner=owner,
            )
        if refunded and order.refund_at is not None:
            refund_id = new_id("re", _SALT_RE)
            self._put(
                self.stripe.refunds,
                {
                    "id": refund_id,
                    "object": "refund",
                    "amount": amount,
                    "charge": order.charge_id,
                    "payment_intent": order.payment_intent_id,
                    "currency": "usd",
                    "created": order.refund_at,
                    "reason": "requested_by_customer",
                    "status": "succeeded",
                    "metadata": {},
                },
                owner=owner,
            )
            refunds = self.stripe.charges[order.charge_id]["refunds"]
            refunds["data"].append(self.stripe.refunds[refund_id])
            refunds["total_count"] = 1
        if disputed and order.dispute_at is not None:
            dispute_id = new_id("dp", _SALT_DP)
            self._put(
                self.stripe.disputes,
                {
                    "id": dispute_id,
                    "object": "dispute",
                    "balance_transactions": [],
                    "evidence": {},
                    "evidence_details": {
                        "due_by": order.dispute_at + 7 * DAY,
                        "has_evidence": False,
                        "past_due": False,
                        "submission_count": 0,
                    },
                    "is_charge_refundable": False,
                    "amount": amount,
                    "charge": order.charge_id,
                    "payment_intent": order.payment_intent_id,
                    "currency": "usd",
                    "created": order.dispute_at,
                    "reason": "fraudulent",
                    "status": "needs_response",
                    "livemode": False,
                    "metadata": {},
                },
                owner=owner,
            )
        self.stripe.payments[order.payment_id] = PaymentFacts(
            payment_id=order.payment_id,
            order_id=order.id,
            route=order.route,
            account_id=owner,
            destination_account_id=destination,
            charge_id=order.charge_id,
            payment_intent_id=order.payment_intent_id,
            balance_transaction_id=txn["id"],
            transfer_id=transfer_id,
            destination_payment_id=destination_payment_id,
            application_fee_amount=fee_amount,
            net_amount=net,
            available_on=txn["available_on"],
        )

    def finish_payouts(self) -> None:
        account_numbers = {account: number for number, account in enumerate(self.stripe.accounts)}
        for (account, created), txn_ids in sorted(self.pending_payouts.items()):
            if created > self.now:
                continue  # not paid out yet: the balance is still pending or available
            day = created // DAY
            rng = random.Random(f"payout:{self.seed}:{account}:{day}")
            payout_id = stripe_id(
                prefix="po",
                index=day * 1024 + account_numbers[account],
                salt=seed_salt(self.seed, _SALT_PO),
                account_fragment=account_fragment(account),
                rng=rng,
            )
            arrival = _arrival(created)
            failed = rng.randrange(100) < FAILED_PAYOUT_PERCENT
            if self.now < created + PAYOUT_PENDING_SECONDS:
                status = "pending"
            elif self.now < arrival:
                status = "in_transit"
            else:
                status = "failed" if failed else "paid"
            automatic = account not in self.manual
            self._put(
                self.stripe.payouts,
                {
                    "id": payout_id,
                    "object": "payout",
                    "amount": sum(self.stripe.balance_transactions[t]["net"] for t in txn_ids),
                    "currency": "usd",
                    "created": created,
                    "arrival_date": arrival,
                    "automatic": automatic,
                    "destination": self.bank_of[account],
                    "method": "standard",
                    "type": "bank_account",
                    "source_type": "card",
                    "status": status,
                    "failure_code": "account_closed" if status == "failed" else None,
                    "failure_message": "The bank account has been closed." if status == "failed" else None,
                    "statement_descriptor": None,
                    "livemode": False,
                    "metadata": {},
                },
                owner=account,
            )
            self.stripe.payout_balance_transactions[payout_id] = list(txn_ids) if automatic else []


def build_stripe_world(*, scenario: Scenario) -> StripeWorld:
    """The Stripe objects of every visible payment of `scenario` at its current time."""
    builder = _Builder(scenario)
    for order in scenario.orders():
        builder.add_order(order)
    builder.finish_payouts()
    return builder.stripe
