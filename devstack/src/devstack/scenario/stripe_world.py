# ruff: noqa: S311 - seeded, reproducible pseudo-randomness is the point; nothing here is a secret
"""The Stripe side of a scenario: accounts, payments, balance transactions, transfers and payouts.

Objects are Stripe-shaped JSON dicts keyed by id (shaped in `stripe_objects`), so a Stripe stand-in can
serve them as they are; `owner` says which account can read each object, and `payments` is the ground
truth the enricher's answers are checked against. The scenario passes in its world, orders and clock,
so this module never imports the scenario that uses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from devstack.scenario import catalog, stripe_objects
from devstack.scenario.ids import seed_salt, stripe_id
from devstack.scenario.model import Route
from devstack.scenario.stripe_objects import StripePayment
from devstack.scenario.world import DAY, account_fragment

if TYPE_CHECKING:
    from collections.abc import Iterable

    from devstack.scenario.model import Order
    from devstack.scenario.world import World

# Stripe makes card funds available two days after the charge, then pays out the next business day.
AVAILABLE_AFTER_DAYS = 2
PAYOUT_PENDING_SECONDS = 6 * 3600
FAILED_PAYOUT_PERCENT = 3
CANCELED_MANUAL_PAYOUT_PERCENT = 15
MANUAL_PAYOUT_EVERY_DAYS = 7
# OpenTickets makes about one separate transfer in three once the order is confirmed, hours after the
# charge, instead of on its `charge.succeeded`: a payment enriched in between is still the platform's.
LATE_TRANSFER_ONE_IN = 3
LATE_TRANSFER_SECONDS = 5 * 3600
_SATURDAY = 5
_SALT_TXN = 0x11
_SALT_PY = 0x22
_SALT_TXN_PY = 0x33
_SALT_TR = 0x44
_SALT_RE = 0x55
_SALT_DP = 0x66
_SALT_PO = 0x77
_SALT_FEE = 0x88
# Routes whose platform charge's money moves to the organizer's account by a transfer.
_TRANSFERRED_ROUTES = frozenset({Route.DESTINATION, Route.SEPARATE_TRANSFER})
# Stripe's payout statuses mapped to the dashboard's deposit status (SPEC section 2).
DEPOSIT_STATUS = {
    "paid": "paid",
    "pending": "pending",
    "in_transit": "pending",
    "failed": "failed",
    "canceled": "failed",
}


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """Where one export PaymentID lives in Stripe and how its money moves, as Stripe shows it now.

    `route` is the route the money has taken so far: a separate transfer not made yet is `platform`.
    """

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
    application_fee_id: str | None = None
    # The payout that carries the organizer's money to a bank (SPEC section 5), once it exists;
    # `deposit_status` is what the dashboard shows: paid, pending, failed or not_traceable.
    payout_id: str | None = None
    payout_status: str | None = None
    payout_arrival_date: int | None = None
    deposit_bank_account_id: str | None = None
    deposit_status: str = "pending"


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
    application_fees: dict[str, dict[str, Any]] = field(default_factory=dict)
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
            self.application_fees,
            self.refunds,
            self.disputes,
            self.payouts,
        ):
            everything.update({key: obj for key, obj in table.items() if self.owner[key] == account_id})
        return everything


def _day_start(ts: int) -> int:
    return ts - ts % DAY


def _available_on(created: int) -> int:
    return _day_start(created) + AVAILABLE_AFTER_DAYS * DAY


def transfer_made_at(payment: StripePayment) -> int:
    """When the payment's transfer to the organizer is made: with the charge, or a late separate one."""
    if payment.route is not Route.SEPARATE_TRANSFER:
        return payment.created
    # Decided by the charge alone, so the same payment is always transferred at the same moment.
    late = hashlib.sha256(f"transfer:{payment.charge_id}".encode()).digest()[0] % LATE_TRANSFER_ONE_IN == 0
    return payment.created + LATE_TRANSFER_SECONDS if late else payment.created


def _arrival(created: int) -> int:
    arrival = created + DAY
    weekday = (arrival // DAY + 3) % 7  # 1970-01-01 was a Thursday
    if weekday >= _SATURDAY:
        arrival += (7 - weekday) * DAY
    return arrival


class _IdSource:
    """Ids for one order's Stripe objects.

    Each id takes random filler from one generator per order, so the sequence of `draw` calls is part of
    the generated world: an id for a new kind of object is drawn after the existing ones, or the ids of
    every seed change (the scenario tests pin a digest of a seeded world).
    """

    def __init__(self, *, seed: int, index: int) -> None:
        self._seed = seed
        self._index = index
        self._rng = random.Random(f"stripe:{seed}:{index}")

    def draw(self, prefix: str, salt: int, *, account: str) -> str:
        """The next id with this prefix for an object owned by `account`."""
        return stripe_id(
            prefix=prefix,
            index=self._index,
            salt=seed_salt(self._seed, salt),
            account_fragment=account_fragment(account),
            rng=self._rng,
        )


class _Transfer(NamedTuple):
    transfer_id: str
    destination_payment_id: str
    # What the connected account keeps of the payment once the transfer's balance transaction settles.
    net: int


class _Builder:
    """Adds the Stripe objects of a world's accounts, then of each order, then the payouts."""

    def __init__(self, world: World, *, now: int) -> None:
        self.world = world
        self.now = now
        self.seed = world.seed
        self.stripe = StripeWorld(platform_account_id=world.platform.id)
        self.manual = {o.account_id for o in world.organizers if o.manual_payouts}
        self.bank_of: dict[str, str] = {}
        # (account, payout day) -> balance transactions paid out together
        self.pending_payouts: dict[tuple[str, int], list[str]] = defaultdict(list)

    def _put(self, table: dict[str, dict[str, Any]], obj: dict[str, Any], *, owner: str) -> None:
        table[obj["id"]] = obj
        self.stripe.owner[obj["id"]] = owner

    # -- accounts ----------------------------------------------------------------------------------

    def add_accounts(self) -> None:
        """The platform and every connected account, each with the bank account it is paid out to."""
        rng = random.Random(f"stripe-accounts:{self.seed}")
        created = self.world.start - 400 * DAY
        for profile in (self.world.platform, *self.world.accounts):
            manual = profile.id in self.manual
            self.stripe.accounts[profile.id] = stripe_objects.account(profile, manual=manual, created=created)
            bank_id = f"ba_1{account_fragment(profile.id)}{rng.randrange(10**12):012d}"[:27]
            bank = stripe_objects.bank_account(
                bank_id=bank_id,
                account_id=profile.id,
                bank_name=rng.choice(catalog.BANK_NAMES),
                last4=f"{rng.randrange(10_000):04d}",
            )
            self._put(self.stripe.bank_accounts, bank, owner=profile.id)
            self.bank_of[profile.id] = bank_id

    # -- one order's payment -----------------------------------------------------------------------

    def add_order(self, order: Order) -> None:
        """Every Stripe object of one order's payment as it stands now, and its ground truth."""
        payment = self._stripe_payment(order)
        if payment is None:
            return
        # The steps draw their ids in this sequence (see `_IdSource`); new steps go after them.
        ids = _IdSource(seed=self.seed, index=order.index)
        txn = self._add_charge_balance_transaction(
            payment, txn_id=ids.draw("txn", _SALT_TXN, account=payment.owner)
        )
        transfer = None
        if payment.destination is not None:
            transfer = self._add_transfer(payment, destination=payment.destination, ids=ids)
        self._add_charge(payment, balance_transaction_id=txn["id"], transfer=transfer)
        if payment.refunded_at is not None:
            refund_id = ids.draw("re", _SALT_RE, account=payment.owner)
            self._add_refund(payment, refund_id=refund_id, created=payment.refunded_at)
        if payment.disputed_at is not None:
            dispute_id = ids.draw("dp", _SALT_DP, account=payment.owner)
            self._add_dispute(payment, dispute_id=dispute_id, created=payment.disputed_at)
        fee_id = None
        if payment.application_fee_amount is not None:
            fee_id = ids.draw("fee", _SALT_FEE, account=self.stripe.platform_account_id)
            self._add_application_fee(payment, fee_id=fee_id, transfer=transfer)
        self._record_payment_facts(order, payment, txn=txn, transfer=transfer, fee_id=fee_id)

    def _stripe_payment(self, order: Order) -> StripePayment | None:
        """The order's payment as Stripe sees it now; None for an order paid outside Stripe."""
        if order.route is None or order.account_id is None or order.charge_id is None:
            return None
        organizer = self.world.organizer(self.world.event(order.event_id).organizer_id)
        refund_at, dispute_at = order.refund_at, order.dispute_at
        return StripePayment(
            order_id=order.id,
            event_id=order.event_id,
            route=order.route,
            owner=order.account_id,
            destination=organizer.account_id if order.route in _TRANSFERRED_ROUTES else None,
            charge_id=order.charge_id,
            payment_intent_id=order.payment_intent_id,
            amount=order.total_cents,
            stripe_fee=order.provider_fee_cents,
            application_fee=order.platform_fee_cents + order.tax_cents,
            created=order.purchase_at,
            refunded_at=refund_at if refund_at is not None and refund_at <= self.now else None,
            disputed_at=dispute_at if dispute_at is not None and dispute_at <= self.now else None,
        )

    def _add_charge_balance_transaction(self, payment: StripePayment, *, txn_id: str) -> dict[str, Any]:
        fee_details = [stripe_objects.fee_detail(payment.stripe_fee, "stripe_fee")]
        if payment.route is Route.DIRECT:
            # On a direct charge the platform's application fee is taken from the connected balance.
            fee_details.append(stripe_objects.fee_detail(payment.application_fee, "application_fee"))
        return self._add_balance_transaction(
            txn_id=txn_id,
            owner=payment.owner,
            amount=payment.amount,
            fee_details=fee_details,
            source=payment.charge_id,
            created=payment.created,
        )

    def _add_transfer(self, payment: StripePayment, *, destination: str, ids: _IdSource) -> _Transfer | None:
        """The transfer to the organizer's account and the `py_` payment it makes there, once made.

        Stripe makes a destination charge's transfer itself; a separate transfer is OpenTickets' own,
        with the charge as `source_transaction` and the same `transfer_group`, made in the same second
        as the charge (on its `charge.succeeded`) or, for some, hours later (`transfer_made_at`). None
        while it is not made yet. With a `source_transaction` the money becomes available to the
        connected account when the charge's does, however late the transfer.
        """
        # Drawn whether made or not: the order's later ids must not depend on the moment.
        transfer_id = ids.draw("tr", _SALT_TR, account=payment.owner)
        arrived_id = ids.draw("py", _SALT_PY, account=destination)
        arrived_txn_id = ids.draw("txn", _SALT_TXN_PY, account=destination)
        made_at = transfer_made_at(payment)
        if made_at > self.now:
            return None
        transfer = stripe_objects.transfer(
            payment, transfer_id=transfer_id, destination_payment_id=arrived_id, created=made_at
        )
        self._put(self.stripe.transfers, transfer, owner=payment.owner)
        # Stripe charges no fee on the transferred money; the platform kept its share before the transfer.
        arrived_txn = self._add_balance_transaction(
            txn_id=arrived_txn_id,
            owner=destination,
            amount=payment.transferred,
            fee_details=[stripe_objects.fee_detail(0, "stripe_fee")],
            source=arrived_id,
            created=made_at,
            available_on=_available_on(payment.created),
        )
        arrived = stripe_objects.destination_payment(
            payment,
            charge_id=arrived_id,
            balance_transaction_id=arrived_txn_id,
            transfer_id=transfer_id,
            created=made_at,
        )
        self._put(self.stripe.charges, arrived, owner=destination)
        return _Transfer(transfer_id=transfer_id, destination_payment_id=arrived_id, net=arrived_txn["net"])

    def _add_charge(
        self, payment: StripePayment, *, balance_transaction_id: str, transfer: _Transfer | None
    ) -> None:
        """The customer's charge and, unless it is a legacy charge, its PaymentIntent."""
        # Only a destination charge names its transfer; a separate transfer names the charge instead.
        made_by_stripe = transfer is not None and payment.route is Route.DESTINATION
        charge = stripe_objects.charge(
            payment,
            balance_transaction_id=balance_transaction_id,
            transfer_id=transfer.transfer_id if transfer and made_by_stripe else None,
        )
        self._put(self.stripe.charges, charge, owner=payment.owner)
        if payment.payment_intent_id is not None:
            intent = stripe_objects.payment_intent(payment, intent_id=payment.payment_intent_id)
            self._put(self.stripe.payment_intents, intent, owner=payment.owner)

    def _add_refund(self, payment: StripePayment, *, refund_id: str, created: int) -> None:
        refund = stripe_objects.refund(payment, refund_id=refund_id, created=created)
        self._put(self.stripe.refunds, refund, owner=payment.owner)
        # Stripe lists a charge's refunds on the charge itself.
        refunds = self.stripe.charges[payment.charge_id]["refunds"]
        refunds["data"].append(refund)
        refunds["total_count"] = len(refunds["data"])

    def _add_dispute(self, payment: StripePayment, *, dispute_id: str, created: int) -> None:
        dispute = stripe_objects.dispute(payment, dispute_id=dispute_id, created=created, now=self.now)
        self._put(self.stripe.disputes, dispute, owner=payment.owner)

    def _add_application_fee(
        self, payment: StripePayment, *, fee_id: str, transfer: _Transfer | None
    ) -> None:
        """The platform's application fee, owned by the platform, linked from the customer's charge."""
        platform = self.stripe.platform_account_id
        fee = stripe_objects.application_fee(
            payment,
            fee_id=fee_id,
            application_id=f"ca_1{account_fragment(platform)}opentickets",
            paid_by=payment.destination or payment.owner,
            charge_id=transfer.destination_payment_id if transfer else payment.charge_id,
        )
        self._put(self.stripe.application_fees, fee, owner=platform)
        self.stripe.charges[payment.charge_id]["application_fee"] = fee_id

    def _record_payment_facts(
        self,
        order: Order,
        payment: StripePayment,
        *,
        txn: dict[str, Any],
        transfer: _Transfer | None,
        fee_id: str | None,
    ) -> None:
        # A separate transfer not made yet leaves the money on the platform, as Stripe shows it now.
        waiting = payment.route is Route.SEPARATE_TRANSFER and transfer is None
        destination = None if waiting else payment.destination
        self.stripe.payments[order.payment_id] = PaymentFacts(
            payment_id=order.payment_id,
            order_id=order.id,
            route=Route.PLATFORM if waiting else payment.route,
            account_id=payment.owner,
            destination_account_id=destination,
            charge_id=payment.charge_id,
            payment_intent_id=payment.payment_intent_id,
            balance_transaction_id=txn["id"],
            transfer_id=transfer.transfer_id if transfer else None,
            destination_payment_id=transfer.destination_payment_id if transfer else None,
            application_fee_amount=payment.application_fee_amount,
            net_amount=transfer.net if transfer else txn["net"],
            available_on=txn["available_on"],
            application_fee_id=fee_id,
            deposit_status="not_traceable" if (destination or payment.owner) in self.manual else "pending",
        )

    # -- balance and payouts -----------------------------------------------------------------------

    def _add_balance_transaction(
        self,
        *,
        txn_id: str,
        owner: str,
        amount: int,
        fee_details: list[dict[str, Any]],
        source: str,
        created: int,
        available_on: int | None = None,
    ) -> dict[str, Any]:
        """A balance transaction on `owner`'s balance, booked into the payout that will settle it."""
        if available_on is None:
            available_on = _available_on(created)
        txn = stripe_objects.balance_transaction(
            txn_id=txn_id,
            amount=amount,
            fee_details=fee_details,
            source=source,
            created=created,
            available_on=available_on,
            status="available" if available_on <= self.now else "pending",
        )
        self._put(self.stripe.balance_transactions, txn, owner=owner)
        if owner in self.manual:
            # Manual payouts are requested by the organizer in weekly batches.
            week = (available_on // DAY + MANUAL_PAYOUT_EVERY_DAYS - 1) // MANUAL_PAYOUT_EVERY_DAYS
            self.pending_payouts[(owner, week * MANUAL_PAYOUT_EVERY_DAYS * DAY)].append(txn_id)
        else:
            self.pending_payouts[(owner, available_on)].append(txn_id)
        return txn

    def finish_payouts(self) -> None:
        """One payout per account and payout day that has come by now, with its status at this moment."""
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
            failed = rng.randrange(100) < FAILED_PAYOUT_PERCENT
            automatic = account not in self.manual
            # Only a payout the organizer requested can be canceled, and only while it is pending.
            canceled = not automatic and rng.randrange(100) < CANCELED_MANUAL_PAYOUT_PERCENT
            payout = stripe_objects.payout(
                payout_id=payout_id,
                amount=sum(self.stripe.balance_transactions[t]["net"] for t in txn_ids),
                created=created,
                arrival_date=_arrival(created),
                automatic=automatic,
                bank_id=self.bank_of[account],
                status=self._payout_status(created=created, failed=failed, canceled=canceled),
            )
            self._put(self.stripe.payouts, payout, owner=account)
            self.stripe.payout_balance_transactions[payout_id] = list(txn_ids) if automatic else []
        self._record_payouts()

    def _record_payouts(self) -> None:
        """Each payment's ground truth gains the automatic payout that carried its organizer's money."""
        payout_of = {
            txn_id: payout_id
            for payout_id, txn_ids in self.stripe.payout_balance_transactions.items()
            for txn_id in txn_ids
        }
        for payment_id, facts in self.stripe.payments.items():
            settled = facts.balance_transaction_id
            if facts.destination_payment_id is not None:
                settled = self.stripe.charges[facts.destination_payment_id]["balance_transaction"]
            payout_id = payout_of.get(settled)
            if payout_id is None:
                continue  # not paid out yet, or paid out by hand (not traceable)
            payout = self.stripe.payouts[payout_id]
            self.stripe.payments[payment_id] = dataclasses.replace(
                facts,
                payout_id=payout_id,
                payout_status=payout["status"],
                payout_arrival_date=payout["arrival_date"],
                deposit_bank_account_id=payout["destination"],
                deposit_status=DEPOSIT_STATUS[payout["status"]],
            )

    def _payout_status(self, *, created: int, failed: bool, canceled: bool) -> str:
        if self.now < created + PAYOUT_PENDING_SECONDS:
            return "pending"
        if canceled:
            return "canceled"
        if self.now < _arrival(created):
            return "in_transit"
        return "failed" if failed else "paid"


def build_stripe_world(*, world: World, orders: Iterable[Order], now: int) -> StripeWorld:
    """The Stripe objects of `world`'s accounts and of `orders`' payments as they stand at `now`."""
    builder = _Builder(world, now=now)
    builder.add_accounts()
    for order in orders:
        builder.add_order(order)
    builder.finish_payouts()
    return builder.stripe
