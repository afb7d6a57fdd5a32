"""A small Stripe world in the fake gateway: one payment of every route, each with its true facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fake_stripe import FakeStripe
from stripe_shapes import (
    PLATFORM,
    account,
    balance_transaction,
    bank_account,
    charge,
    payment_intent,
    payout,
    transfer,
)

from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.service import PaymentEnricher
from otcommon.store import InMemoryContainer
from otcommon.store.topology import STRIPE_FACTS as STRIPE_FACTS_SPEC
from otcommon.store.topology import STRIPE_INDEX as STRIPE_INDEX_SPEC

if TYPE_CHECKING:
    from enricher.gateway import StripeGateway

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = 86400
T_NOW = int(NOW.timestamp())


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    """The fake Stripe plus counters of the ids each builder made."""

    stripe: FakeStripe
    serial: int = 0
    payouts: dict[str | None, list[str]] = field(default_factory=dict)

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}_{self.serial:06d}"

    def connect(self, account_id: str, **names: Any) -> None:
        self.stripe.add_account(account(account_id, **names))
        self.stripe.add_bank_account(
            bank_account(f"ba_{account_id}", last4=account_id[-4:]), account_id=account_id
        )

    def pay_out(
        self,
        transactions: list[str],
        *,
        on: str | None,
        status: str = "paid",
        created: int = T_NOW - DAY,
        automatic: bool = True,
    ) -> str:
        payout_id = self.next_id("po")
        bank = f"ba_{on or PLATFORM}"
        shape = payout(
            payout_id,
            status=status,
            destination=bank,
            created=created,
            arrival_date=created + DAY,
            automatic=automatic,
        )
        self.stripe.add_payout(
            shape,
            account=on,
            transactions=transactions,
        )
        return payout_id

    def charge_on(
        self,
        on: str | None,
        *,
        created: int = T_NOW - 5 * DAY,
        available_on: int = T_NOW - 3 * DAY,
        with_intent: bool = True,
        **fields: Any,
    ) -> tuple[str, str | None, str]:
        """A succeeded charge on an account (None: the platform): (charge id, intent id, txn id)."""
        charge_id = self.next_id("ch")
        txn_id = self.next_id("txn")
        intent_id = self.next_id("pi") if with_intent else None
        self.stripe.add(
            "balance_transaction",
            balance_transaction(txn_id, source=charge_id, available_on=available_on),
            account=on,
        )
        self.stripe.add(
            "charge",
            charge(charge_id, created=created, payment_intent=intent_id, balance_txn=txn_id, **fields),
            account=on,
        )
        if intent_id:
            self.stripe.add("payment_intent", payment_intent(intent_id, latest_charge=charge_id), account=on)
        return charge_id, intent_id, txn_id

    def destination_charge(
        self, destination: str, *, separate: bool = False, **kwargs: Any
    ) -> dict[str, str]:
        """A platform charge whose money a transfer moved to ``destination`` (a py_ payment there)."""
        transfer_id = self.next_id("tr")
        payment_id = self.next_id("py")
        group = f"order_{transfer_id}"
        extra = (
            {"transfer_group": group}
            if separate
            else {"destination": destination, "transfer": transfer_id, "application_fee_amount": 150}
        )
        charge_id, intent_id, platform_txn = self.charge_on(None, **extra, **kwargs)
        py_txn = self.next_id("txn")
        self.stripe.add(
            "balance_transaction",
            balance_transaction(py_txn, source=payment_id, amount=1000, fee=0),
            account=destination,
        )
        self.stripe.add(
            "charge",
            charge(
                payment_id,
                created=kwargs.get("created", T_NOW - 5 * DAY),
                balance_txn=py_txn,
                amount=1000,
                source_transfer=transfer_id,
            ),
            account=destination,
        )
        moved = transfer(transfer_id, destination=destination, destination_payment=payment_id)
        moved["source_transaction"] = charge_id
        moved["transfer_group"] = group if separate else None
        self.stripe.add("transfer", moved)
        return {
            "charge": charge_id,
            "intent": intent_id or "",
            "transfer": transfer_id,
            "py": payment_id,
            "py_txn": py_txn,
            "platform_txn": platform_txn,
        }


def new_world(connected: int = 3) -> World:
    stripe = FakeStripe(platform=account(PLATFORM, business_name="OpenTickets"))
    world = World(stripe=stripe)
    stripe.add_bank_account(
        bank_account(f"ba_{PLATFORM}", bank_name="PLATFORM BANK", last4="0001"), account_id=PLATFORM
    )
    for n in range(connected):
        world.connect(f"acct_org{n:04d}", business_name=f"Organizer {n}")
    return world


def index_container() -> InMemoryContainer:
    """An empty in-memory ``stripe-index`` container."""
    return InMemoryContainer(STRIPE_INDEX_SPEC.name, partition_key_path=STRIPE_INDEX_SPEC.partition_key)


def facts_container() -> InMemoryContainer:
    """An empty in-memory ``stripe-facts`` container."""
    return InMemoryContainer(STRIPE_FACTS_SPEC.name, partition_key_path=STRIPE_FACTS_SPEC.partition_key)


def enricher_for(
    gateway: StripeGateway,
    clock: Clock,
    *,
    container: InMemoryContainer | None = None,
    facts: InMemoryContainer | None = None,
) -> PaymentEnricher:
    index = StripeIndex(container or index_container(), facts=facts or facts_container())
    indexer = Indexer(gateway=gateway, index=index, clock=clock)
    return PaymentEnricher(gateway=gateway, index=index, indexer=indexer, clock=clock)
