"""Enriching one payment: the indexes first, a refresh when they cannot answer, a probe only as a last resort.

The calls a payment costs (see DESIGN.md, "Call budget"): none when its charge, transfer, payout
and accounts are indexed; otherwise its share of one listing per account (charges) and one per
account and freshness window (payouts), shared with every payment enriched meanwhile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from enricher.findings import Findings, PayoutTrace
from enricher.gateway import StripeObjectMissingError
from enricher.routing import RouteType, classify_route

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from enricher.gateway import StripeGateway
    from enricher.indexer import Indexer
    from enricher.indexes import IndexedPayment, StripeIndex


@dataclass(frozen=True, slots=True)
class Unresolved:
    """No Stripe account knows the payment (a business result, not a failure)."""

    reason: str


@dataclass(frozen=True, slots=True)
class _Money:
    """The charge whose balance transaction carries the organizer's money, and its account."""

    account: str | None
    charge: dict[str, Any]
    transfer_id: str | None = None


class PaymentEnricher:
    """Finds the Stripe facts of ``pi_``/``ch_`` payments."""

    def __init__(
        self,
        *,
        gateway: StripeGateway,
        index: StripeIndex,
        indexer: Indexer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gateway = gateway
        self._index = index
        self._indexer = indexer
        self._clock = clock

    async def enrich(self, payment_id: str, *, requested_at: datetime) -> Findings | Unresolved:
        """The facts of one payment that existed at ``requested_at``, or why there are none."""
        located = await self._locate(payment_id, requested_at=requested_at)
        if isinstance(located, Unresolved):
            return located
        platform = await self._indexer.account(None)
        charge = located.charge
        if located.account is not None:
            route = classify_route(owner_account_id=located.account, charge=charge)
            money = _Money(account=located.account, charge=charge)
        else:
            money, destination = await self._follow_transfer(charge, requested_at=requested_at)
            route = classify_route(owner_account_id=None, charge=charge, transfer_destination=destination)
        balance = await self._balance_transaction(money)
        payout = await self._trace_payout(account=money.account, balance=balance)
        destination_name = None
        if route.route_type is RouteType.CONNECTED and route.destination_account_id:
            destination_name = (await self._indexer.account(route.destination_account_id)).name
        return Findings(
            route=route,
            platform_account_id=platform.account_id,
            platform_account_name=platform.name,
            destination_account_name=destination_name,
            charge_id=charge["id"],
            payment_intent_id=charge.get("payment_intent"),
            balance_transaction_id=balance.get("id"),
            transfer_id=money.transfer_id,
            application_fee_amount=charge.get("application_fee_amount"),
            net_amount=balance.get("net"),
            currency=balance.get("currency") or charge.get("currency"),
            payout=payout,
        )

    async def _locate(self, payment_id: str, *, requested_at: datetime) -> IndexedPayment | Unresolved:
        # Watched before the first read: a listing in flight may index it between the two.
        with self._index.watching(f"payment:{payment_id}") as seen:
            found = await self._index.payment(payment_id)
            if found is None:
                accounts = await self._indexer.connected_accounts(as_of=requested_at)
                found = await self._list_until_found(
                    payment_id, accounts, seen=seen, requested_at=requested_at
                )
        if found is not None:
            if found.account is None:
                # A page of a listing still in flight indexed it: the connected accounts' listings
                # in flight may link its transfer (else one Stripe call would find it).
                await self._indexer.charge_listings_in_flight()
            return found
        return Unresolved(
            reason=(
                f"not found on the platform or any of {len(accounts)} connected accounts "
                "(charges listed after the payment was requested)"
            )
        )

    async def _list_until_found(
        self, payment_id: str, accounts: list[str], *, seen: asyncio.Future[None], requested_at: datetime
    ) -> IndexedPayment | None:
        """List every account's charges; the payment as soon as a listed page indexed it.

        The payment goes on while the listings go on (their pages are shared with the messages
        still waiting), unless what it needs is still to be listed: a platform charge waits for
        every listing, since the connected account's listed payments link its transfer
        (``transfer:``, and ``transfer-of:`` for a separate transfer).
        """

        async def list_every_account() -> None:
            await self._indexer.ensure_charges_of((None, *accounts), as_of=requested_at)
            # Each separate transfer made with its charge is linked now: the platform charges
            # still without one are looked up at once, not when their own messages come.
            self._indexer.look_up_groups_ahead()

        # A task, not the gather itself: a cancelled task ends quietly, a cancelled gather with an
        # exception nobody retrieves.
        listings = asyncio.ensure_future(list_every_account())
        try:
            await asyncio.wait((seen, listings), return_when=asyncio.FIRST_COMPLETED)
            found = await self._index.payment(payment_id) if seen.done() else None
            if found is None or found.account is None:
                await listings
                found = found or await self._index.payment(payment_id)
        finally:
            if not listings.done():
                listings.cancel()  # the shared listings go on (shielded); this message waits no more
            elif not listings.cancelled():
                # Retrieved, not raised: a listing that failed after this payment was found fails the
                # messages still waiting for it (raised above when this one waited for it).
                listings.exception()
        return found

    async def _follow_transfer(
        self, charge: dict[str, Any], *, requested_at: datetime
    ) -> tuple[_Money, str | None]:
        """Where a platform charge's money went: a transfer's destination payment, or the platform."""
        transfer_id = charge.get("transfer")
        transfer: dict[str, Any] | None
        if transfer_id:  # a destination charge: Stripe made the transfer itself
            transfer = await self._indexer.transfer(transfer_id)
        else:  # separate charges and transfers: indexed from the connected account's payment
            transfer = await self._index.get(f"transfer-of:{charge['id']}")
            if transfer is None and charge.get("transfer_group"):
                # Not linked by any listing: the charge's transfer group names it (one call).
                transfer = await self._indexer.transfer_in_group(
                    charge_id=charge["id"], transfer_group=charge["transfer_group"], as_of=requested_at
                )
            transfer_id = transfer.get("transfer") if transfer else None
        if transfer is None or not transfer.get("destinationPayment"):
            return _Money(account=None, charge=charge), None
        destination = transfer["destination"]
        payment_id = transfer["destinationPayment"]
        located = await self._index.payment(payment_id)
        if located is None:
            await self._indexer.ensure_charges(destination, as_of=requested_at)
            located = await self._index.payment(payment_id)
        if located is None:
            # Not listed (yet): read the one destination payment rather than fail the whole payment.
            paid = await self._gateway.retrieve_charge(payment_id, account=destination)
            trimmed = await self._index.put_charge(paid, account=destination)
            return _Money(account=destination, charge=trimmed, transfer_id=transfer_id), destination
        return _Money(account=destination, charge=located.charge, transfer_id=transfer_id), destination

    async def _balance_transaction(self, money: _Money) -> dict[str, Any]:
        balance = money.charge.get("balance_transaction") or {}
        if balance.get("id") and balance.get("available_on") is None:
            # Listed without expansion: the one object the index lacks.
            return await self._gateway.retrieve_balance_transaction(balance["id"], account=money.account)
        return dict(balance)

    async def _trace_payout(self, *, account: str | None, balance: dict[str, Any]) -> PayoutTrace:
        facts = await self._indexer.account(account)
        available_on = balance.get("available_on")
        if facts.manual_payouts:
            return PayoutTrace(available_on=available_on, manual_payouts=True)
        if not balance.get("id") or (available_on is not None and available_on > self._clock().timestamp()):
            # Funds not available yet are in no automatic payout (only those are indexed): nothing to read.
            return PayoutTrace(available_on=available_on)
        key = f"txn:{balance['id']}"
        with self._index.watching(key) as seen:  # before the first read: a listing may link it meanwhile
            link = await self._index.get(key)
            if link is None and available_on is not None:
                await _until_written(seen, self._indexer.ensure_payouts(account))
                link = await self._index.get(key)
        if link is None:  # the funds are not in a payout yet
            return PayoutTrace(available_on=available_on)
        payout = await self._indexer.payout(link["payout"], account=account)
        bank_name = bank_last4 = None
        if payout.get("destination"):
            try:
                bank = await self._indexer.bank(
                    account_id=account or facts.account_id, bank_account_id=payout["destination"]
                )
            except StripeObjectMissingError:
                bank = {}  # a deleted bank account: the payout is still traced
            bank_name, bank_last4 = bank.get("bankName"), bank.get("last4")
        return PayoutTrace(
            available_on=available_on,
            payout_id=payout["payoutId"],
            payout_status=payout["status"],
            arrival_date=payout.get("arrivalDate"),
            bank_name=bank_name,
            bank_last4=bank_last4,
        )


async def _until_written(seen: asyncio.Future[None], listing: Awaitable[None]) -> None:
    """Wait for a listing until the document watched (``seen``) is written, or the listing ends.

    A listing that fails after that fails the others waiting for it, not this one.
    """
    # A task, not the awaitable itself: a cancelled task ends quietly (the listing it joined is shared).
    task = asyncio.ensure_future(listing)
    try:
        await asyncio.wait((seen, task), return_when=asyncio.FIRST_COMPLETED)
        if not seen.done():
            await task
    finally:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: raised above only when this payment waited for the listing
