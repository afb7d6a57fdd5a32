"""Enriching payments from the indexes, refreshing them when needed, and what that costs in Stripe calls."""

from __future__ import annotations

import asyncio
import gc
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from stripe_shapes import PLATFORM
from world import DAY, T_NOW, Clock, enricher_for, facts_container, index_container, new_world

from enricher.findings import Findings
from enricher.gateway import StripeUnavailableError
from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.routing import Route, RouteType
from enricher.service import PaymentEnricher, Unresolved

if TYPE_CHECKING:
    from fake_stripe import FakeStripe
    from world import World

    from enricher.gateway import ListPage

ORG = "acct_org0000"


async def test_a_platform_charge_is_traced_to_the_platform_payout():
    world = new_world()
    charge_id, intent_id, txn = world.charge_on(None)
    payout_id = world.pay_out([txn], on=None)
    found = await enricher_for(world.stripe, Clock()).enrich(intent_id, requested_at=Clock()())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.PLATFORM)
    assert (found.charge_id, found.payment_intent_id, found.balance_transaction_id) == (
        charge_id,
        intent_id,
        txn,
    )
    assert found.platform_account_id == PLATFORM
    assert found.platform_account_name == "OpenTickets"
    assert found.payout.payout_id == payout_id
    assert found.payout.payout_status == "paid"
    assert (found.payout.bank_name, found.payout.bank_last4) == ("PLATFORM BANK", "0001")
    assert found.net_amount == 1037
    assert found.currency == "usd"


async def test_a_direct_charge_is_found_on_its_connected_account():
    world = new_world()
    charge_id, _, txn = world.charge_on(ORG, with_intent=False)
    payout_id = world.pay_out([txn], on=ORG, status="in_transit")
    found = await enricher_for(world.stripe, Clock()).enrich(charge_id, requested_at=Clock()())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id=ORG, direct=True)
    assert found.destination_account_name == "Organizer 0"
    assert found.payment_intent_id is None
    assert found.payout.payout_id == payout_id
    assert found.deposit_status == "pending"
    assert found.payout.payout_status == "in_transit"
    assert found.payout.bank_last4 == "0000"


async def test_a_destination_charge_follows_the_transfer_to_the_connected_payout():
    world = new_world()
    ids = world.destination_charge(ORG)
    payout_id = world.pay_out([ids["py_txn"]], on=ORG)
    world.pay_out([ids["platform_txn"]], on=None)
    found = await enricher_for(world.stripe, Clock()).enrich(ids["intent"], requested_at=Clock()())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id=ORG)
    assert found.charge_id == ids["charge"]
    assert found.transfer_id == ids["transfer"]
    assert found.balance_transaction_id == ids["py_txn"]
    assert found.application_fee_amount == 150
    assert found.payout.payout_id == payout_id
    assert found.payout.bank_last4 == "0000"


async def test_a_separate_transfer_is_linked_from_the_connected_payment():
    world = new_world()
    ids = world.destination_charge("acct_org0002", separate=True)
    payout_id = world.pay_out([ids["py_txn"]], on="acct_org0002", status="failed")
    world.pay_out([ids["platform_txn"]], on=None)
    found = await enricher_for(world.stripe, Clock()).enrich(ids["charge"], requested_at=Clock()())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id="acct_org0002")
    assert found.transfer_id == ids["transfer"]
    # The organizer's money: the py_ payment's balance transaction, in the connected account's payout.
    assert found.balance_transaction_id == ids["py_txn"]
    assert found.net_amount == 1000
    assert found.application_fee_amount is None
    assert found.payout.payout_id == payout_id
    assert found.deposit_status == "failed"
    # The connected account's listing linked the transfer: the transfer group cost no call.
    assert "transfers.list" not in world.stripe.calls.by_operation


async def test_a_separate_transfer_no_listing_linked_is_found_by_its_transfer_group():
    world = new_world()
    world.stripe.expand_source_transfer = False  # the listing names the transfer but not its charge
    ids = world.destination_charge("acct_org0001", separate=True)
    payout_id = world.pay_out([ids["py_txn"]], on="acct_org0001")
    clock = Clock()
    enricher = enricher_for(world.stripe, clock)
    found = await enricher.enrich(ids["intent"], requested_at=clock())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id="acct_org0001")
    assert found.transfer_id == ids["transfer"]
    assert found.balance_transaction_id == ids["py_txn"]
    assert found.payout.payout_id == payout_id
    assert world.stripe.calls.by_operation["transfers.list"] == 1
    # Indexed: the same payment again costs no call.
    before = world.stripe.calls.total
    assert await enricher.enrich(ids["charge"], requested_at=clock()) == found
    assert world.stripe.calls.total == before


async def test_a_platform_charge_whose_group_has_no_transfer_stays_on_the_platform():
    world = new_world()
    charge_id, _, txn = world.charge_on(None, transfer_group="order_not_transferred_yet")
    world.pay_out([txn], on=None)
    found = await enricher_for(world.stripe, Clock()).enrich(charge_id, requested_at=Clock()())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.PLATFORM)
    assert found.transfer_id is None
    assert world.stripe.calls.by_operation["transfers.list"] == 1


async def test_the_group_lookup_a_listed_platform_charge_needs_is_asked_before_its_payment_is_enriched():
    world = new_world(connected=1)
    grouped, _, txn = world.charge_on(None, transfer_group="order_not_transferred_yet")
    world.pay_out([txn], on=None)
    other, _, _ = world.charge_on(None)
    clock = Clock()
    requested_at = clock()
    enricher, indexer = enricher_and_indexer(world.stripe, clock)
    # Another platform payment's enrichment waits for every account's listing; the platform's
    # listing found the grouped charge with no transfer linked: its group is asked then.
    assert isinstance(await enricher.enrich(other, requested_at=requested_at), Findings)
    await indexer.wait_ahead()
    assert world.stripe.calls.by_operation["transfers.list"] == 1
    # The grouped payment's enrichment shares that lookup (it started after the payment was
    # requested): no second call.
    clock.advance(30)
    found = await enricher.enrich(grouped, requested_at=requested_at)
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.PLATFORM)
    assert world.stripe.calls.by_operation["transfers.list"] == 1


async def test_a_group_lookup_older_than_the_request_is_asked_again():
    world = new_world(connected=1)
    charge_id, _, txn = world.charge_on(None, transfer_group="order_not_transferred_yet")
    world.pay_out([txn], on=None)
    clock = Clock()
    enricher, _ = enricher_and_indexer(world.stripe, clock)
    assert isinstance(await enricher.enrich(charge_id, requested_at=clock()), Findings)
    assert world.stripe.calls.by_operation["transfers.list"] == 1
    # Requested after that lookup: the transfer may have been made since.
    clock.advance(60)
    found = await enricher.enrich(charge_id, requested_at=clock())
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.PLATFORM)
    assert world.stripe.calls.by_operation["transfers.list"] == 2


async def test_a_listing_asks_no_group_lookup_ahead_for_the_charges_an_earlier_listing_saw():
    world = new_world(connected=1)
    world.charge_on(None, created=T_NOW - 60, transfer_group="order_not_transferred_yet")
    first, _, _ = world.charge_on(None, created=T_NOW - 60)
    clock = Clock()
    enricher, indexer = enricher_and_indexer(world.stripe, clock)
    assert isinstance(await enricher.enrich(first, requested_at=clock()), Findings)
    await indexer.wait_ahead()
    assert world.stripe.calls.by_operation["transfers.list"] == 1
    # The next listings see the grouped charge again (their overlap) and a new payment.
    clock.advance(60)
    second, _, _ = world.charge_on(None, created=T_NOW + 30)
    assert isinstance(await enricher.enrich(second, requested_at=clock()), Findings)
    await indexer.wait_ahead()
    assert world.stripe.calls.by_operation["charges.list"] == 4
    assert world.stripe.calls.by_operation["transfers.list"] == 1


async def test_the_platform_account_is_asked_with_the_accounts_listing_before_any_charges():
    world = new_world(connected=1)
    clock = Clock()
    _, indexer = enricher_and_indexer(world.stripe, clock)
    await indexer.connected_accounts(as_of=clock())
    assert world.stripe.calls.by_operation["accounts.retrieve_current"] == 1
    assert "charges.list" not in world.stripe.calls.by_operation
    # Every payment needs it: asked once, then read from the index.
    await indexer.account(None)
    assert world.stripe.calls.by_operation["accounts.retrieve_current"] == 1


async def test_manual_payouts_are_not_traceable_and_cost_no_payout_calls():
    world = new_world(connected=0)
    world.connect("acct_manual01", business_name="Cash Only", interval="manual")
    charge_id, _, _ = world.charge_on("acct_manual01")
    found = await enricher_for(world.stripe, Clock()).enrich(charge_id, requested_at=Clock()())
    assert isinstance(found, Findings)
    assert found.deposit_status == "not_traceable"
    # The platform's payouts are listed beside its first charges listing; the manual account's never.
    assert world.stripe.calls.made("payouts.list", account="acct_manual01") == 0


async def test_an_accounts_first_charges_listing_lists_its_payouts_beside_it():
    world = new_world(connected=1)
    world.connect("acct_manual01", business_name="Cash Only", interval="manual")
    _, _, txn = world.charge_on(ORG)
    payout_id = world.pay_out([txn], on=ORG)
    clock = Clock()
    _, indexer = enricher_and_indexer(world.stripe, clock)
    await indexer.connected_accounts(as_of=clock())
    for account in (ORG, "acct_manual01"):
        await indexer.ensure_charges(account, as_of=clock())
    await indexer.wait_ahead()
    # A cold start's payments will need the payout contents: indexed before any payment asks.
    assert world.stripe.calls.made("payouts.list", account=ORG) == 1
    assert world.stripe.calls.made("balance_transactions.list", account=ORG) == 1
    assert (await indexer.payout(payout_id, account=ORG))["balanceTransactions"] == [txn]
    assert world.stripe.calls.made("payouts.list", account="acct_manual01") == 0  # nothing to trace
    # A later listing of the account's charges starts from its cursor and lists no payouts.
    clock.advance(600)
    await indexer.ensure_charges(ORG, as_of=clock())
    await indexer.wait_ahead()
    assert world.stripe.calls.made("charges.list", account=ORG) == 2
    assert world.stripe.calls.made("payouts.list", account=ORG) == 1


async def test_funds_not_yet_available_are_pending_then_paid_once_their_payout_exists():
    world = new_world()
    clock = Clock()
    charge_id, _, txn = world.charge_on(ORG, available_on=T_NOW + 2 * DAY)
    enricher, indexer = enricher_and_indexer(world.stripe, clock)
    found = await enricher.enrich(charge_id, requested_at=clock())
    assert isinstance(found, Findings)
    assert found.deposit_status == "pending"
    assert found.payout.available_on == T_NOW + 2 * DAY
    await indexer.wait_ahead()
    # Listed once, beside the account's first charges listing (a cold start's backlog needs them).
    assert world.stripe.calls.made("payouts.list", account=ORG) == 1
    # Later, funds not available yet cost no payout listing: nothing to look for before available_on.
    clock.advance(600)
    later_id, _, _ = world.charge_on(ORG, available_on=T_NOW + 2 * DAY, created=T_NOW + 500)
    assert (await enricher.enrich(later_id, requested_at=clock())).deposit_status == "pending"  # type: ignore[union-attr]
    assert world.stripe.calls.made("charges.list", account=ORG) == 2
    assert world.stripe.calls.made("payouts.list", account=ORG) == 1

    clock.advance(3 * DAY)
    payout_id = world.pay_out([txn], on=ORG, created=T_NOW + 2 * DAY + 600)
    found = await enricher.enrich(charge_id, requested_at=clock())
    assert isinstance(found, Findings)
    assert found.payout.payout_id == payout_id
    assert found.deposit_status == "paid"


async def test_an_open_payout_is_read_again_once_its_freshness_window_passes():
    world = new_world()
    clock = Clock()
    charge_id, _, txn = world.charge_on(ORG)
    payout_id = world.pay_out([txn], on=ORG, status="in_transit")
    enricher = enricher_for(world.stripe, clock)
    assert (await enricher.enrich(charge_id, requested_at=clock())).payout.payout_status == "in_transit"  # type: ignore[union-attr]
    world.stripe._objects[(ORG, "payout")][payout_id]["status"] = "paid"
    clock.advance(60)
    assert (await enricher.enrich(charge_id, requested_at=clock())).payout.payout_status == "in_transit"  # type: ignore[union-attr]
    clock.advance(600)
    assert (await enricher.enrich(charge_id, requested_at=clock())).payout.payout_status == "paid"  # type: ignore[union-attr]
    assert world.stripe.calls.by_operation["payouts.retrieve"] == 1


async def test_a_payment_no_account_knows_is_unresolved_with_the_reason():
    world = new_world()
    found = await enricher_for(world.stripe, Clock()).enrich("pi_unknown", requested_at=Clock()())
    assert isinstance(found, Unresolved)
    assert "3 connected accounts" in found.reason


async def test_new_payments_are_found_by_an_incremental_refresh():
    world = new_world()
    clock = Clock()
    first, _, _ = world.charge_on(ORG, created=T_NOW - 2 * DAY)
    enricher = enricher_for(world.stripe, clock)
    await enricher.enrich(first, requested_at=clock())
    listed_before = world.stripe.calls.by_operation["charges.list"]

    clock.advance(3600)
    later, _, _ = world.charge_on(ORG, created=T_NOW + 1800)
    found = await enricher.enrich(later, requested_at=clock())
    assert isinstance(found, Findings)
    assert found.charge_id == later
    # One listing per account (platform and three connected), each from its cursor, not from the start.
    assert world.stripe.calls.by_operation["charges.list"] == listed_before + 4
    cursor = T_NOW - 2 * DAY
    assert (ORG, cursor - 300) in world.stripe.charge_listings[-4:]


async def test_a_payment_requested_before_the_last_refresh_started_costs_no_new_listing():
    world = new_world()
    clock = Clock()
    enricher = enricher_for(world.stripe, clock)
    await enricher.enrich("pi_missing1", requested_at=clock())
    calls = world.stripe.calls.total
    clock.advance(5)
    found = await enricher.enrich("pi_missing2", requested_at=clock() - timedelta(minutes=10))
    assert isinstance(found, Unresolved)
    assert world.stripe.calls.total == calls


async def test_a_thousand_payments_queued_at_once_cost_far_fewer_calls_than_probing():
    world = new_world(connected=20)
    accounts = [f"acct_org{n:04d}" for n in range(20)]
    payments: list[str] = []
    for n in range(1000):
        on = None if n % 7 == 0 else accounts[n % 20]
        charge_id, intent_id, _ = world.charge_on(on, created=T_NOW - 5 * DAY + n)
        payments.append(intent_id or charge_id)
    # One payout per account holds all its money.
    for on in (None, *accounts):
        transactions = [
            t
            for (key, kind), objs in world.stripe._objects.items()
            if kind == "balance_transaction" and key == (on or "platform")
            for t in objs
        ]
        world.pay_out(transactions, on=on)
    world.stripe.page_size = 100
    clock = Clock()
    enricher = enricher_for(world.stripe, clock)
    results = await asyncio.gather(*(enricher.enrich(p, requested_at=clock()) for p in payments))
    assert all(isinstance(r, Findings) and r.deposit_status == "paid" for r in results)

    calls = world.stripe.calls.total
    # Probing: the platform, then each account in turn until the owner, then the payout trace.
    naive = sum(
        1 + (1 + accounts.index(a) + 1 if a else 0) for a in (r.route.destination_account_id for r in results)
    )
    assert calls < naive / 20
    assert calls / len(payments) < 0.15
    # Each account listed once (single flight), not once per payment.
    assert world.stripe.calls.by_operation["accounts.list"] == 1
    assert world.stripe.calls.by_operation["payouts.list"] == 21

    again = await asyncio.gather(*(enricher.enrich(p, requested_at=clock()) for p in payments))
    assert again == results
    assert world.stripe.calls.total == calls


async def test_concurrent_payments_of_one_account_share_one_listing():
    world = new_world(connected=1)
    payments = [world.charge_on(ORG, created=T_NOW - DAY + n)[0] for n in range(50)]
    clock = Clock()
    enricher = enricher_for(world.stripe, clock)
    await asyncio.gather(*(enricher.enrich(p, requested_at=clock()) for p in payments))
    assert world.stripe.charge_listings == [(None, None), (ORG, None)]
    assert world.stripe.calls.by_operation["accounts.retrieve_current"] == 1


async def test_a_listing_made_by_another_replica_is_not_repeated():
    world = new_world(connected=1)
    shared, facts = index_container(), facts_container()
    clock = Clock()
    first, second = (
        enricher_for(world.stripe, clock, container=shared, facts=facts),
        enricher_for(world.stripe, clock, container=shared, facts=facts),
    )
    await first.enrich("pi_unknown1", requested_at=clock())
    await second.enrich("pi_unknown1", requested_at=clock())  # warms second's memo of the marks
    clock.advance(60)
    await first.enrich("pi_unknown2", requested_at=clock())
    listed = world.stripe.calls.by_operation["charges.list"]
    await second.enrich("pi_unknown2", requested_at=clock())
    assert world.stripe.calls.by_operation["charges.list"] == listed


class Held:
    """The fake Stripe, with some calls (a subclass's) held until ``release`` is set."""

    def __init__(self, stripe: FakeStripe) -> None:
        self._stripe = stripe
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stripe, name)

    async def _hold(self) -> None:
        self.reached.set()
        await self.release.wait()


class HeldListing(Held):
    """The charge listing of one account held."""

    def __init__(self, stripe: FakeStripe, *, account: str | None) -> None:
        super().__init__(stripe)
        self._account = account

    async def list_charges(
        self,
        *,
        account: str | None,
        created_after: int | None,
        starting_after: str | None,
        created_before: int | None = None,
    ) -> ListPage:
        if account == self._account:
            await self._hold()
        return await self._stripe.list_charges(
            account=account,
            created_after=created_after,
            starting_after=starting_after,
            created_before=created_before,
        )


class HeldPayoutContents(Held):
    """The contents listing of one payout held (and then failed, with ``fails``)."""

    def __init__(self, stripe: FakeStripe | Held, *, payout_id: str, fails: bool = False) -> None:
        super().__init__(stripe)  # type: ignore[arg-type]
        self._payout_id = payout_id
        self._fails = fails

    async def list_payout_transactions(
        self, *, account: str | None, payout_id: str, starting_after: str | None
    ) -> ListPage:
        if payout_id == self._payout_id:
            await self._hold()
            if self._fails:
                raise StripeUnavailableError("payout contents: Stripe answered 503", status=503)
        return await self._stripe.list_payout_transactions(
            account=account, payout_id=payout_id, starting_after=starting_after
        )


def enricher_and_indexer(gateway: Any, clock: Clock) -> tuple[PaymentEnricher, Indexer]:
    index = StripeIndex(index_container(), facts=facts_container())
    indexer = Indexer(gateway=gateway, index=index, clock=clock)
    return PaymentEnricher(gateway=gateway, index=index, indexer=indexer, clock=clock), indexer


async def test_a_payment_a_listed_page_indexed_goes_on_while_another_account_is_still_listed():
    world = new_world(connected=1)
    charge_id, _, _ = world.charge_on(ORG)
    held = HeldListing(world.stripe, account=None)  # the platform's listing
    clock = Clock()
    enricher, indexer = enricher_and_indexer(held, clock)
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    # Returns while the platform's listing is held (it never returned without this).
    found = await enricher.enrich(charge_id, requested_at=clock())
    gc.collect()  # a future whose exception nobody retrieved reports it when collected
    assert unhandled == []
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id=ORG, direct=True)
    assert held.reached.is_set()
    assert not held.release.is_set()
    held.release.set()
    await indexer.ensure_charges(None, as_of=clock())  # the held listing ends and indexes its page


async def test_messages_waiting_for_the_same_listings_cost_no_task_per_account():
    # A cold start: hundreds of messages wait for the same listings. A task per message and account
    # (six here, twenty-one in the benchmark's world) was most of the process's work while they waited.
    world = new_world(connected=5)
    waiting = 300
    charge_ids = [world.charge_on(None)[0] for _ in range(waiting)]  # platform charges wait for every listing
    held = HeldListing(world.stripe, account=None)
    clock = Clock()
    enricher, _ = enricher_and_indexer(held, clock)
    requested_at = clock()
    before = len(asyncio.all_tasks())
    enriching = [asyncio.ensure_future(enricher.enrich(c, requested_at=requested_at)) for c in charge_ids]
    await held.reached.wait()
    for _ in range(100):  # yields only: every message reaches its wait
        await asyncio.sleep(0)
    assert not any(task.done() for task in enriching)
    # Each message: its own task and one for its wait on the listings; the listings are shared.
    assert len(asyncio.all_tasks()) - before <= 2 * waiting + 10
    held.release.set()
    found = await asyncio.gather(*enriching)
    assert all(isinstance(f, Findings) and f.charge_id == c for f, c in zip(found, charge_ids, strict=True))
    # One listing per account for all 300: the platform's three pages of 100 and one page each for the others.
    assert world.stripe.calls.by_operation["charges.list"] == 3 + 5


async def test_a_platform_charge_found_early_waits_for_the_listing_that_links_its_separate_transfer():
    world = new_world(connected=1)
    ids = world.destination_charge(ORG, separate=True)
    held = HeldListing(world.stripe, account=ORG)
    clock = Clock()
    enricher, indexer = enricher_and_indexer(held, clock)
    enriching = asyncio.ensure_future(enricher.enrich(ids["charge"], requested_at=clock()))
    await indexer.ensure_charges(None, as_of=clock())  # the platform's listing indexed the charge
    await held.reached.wait()
    for _ in range(100):  # yields only: time for the enrichment to end, had it not waited
        await asyncio.sleep(0)
    assert not enriching.done()
    held.release.set()
    found = await enriching
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id=ORG)
    assert found.transfer_id == ids["transfer"]
    assert "transfers.list" not in world.stripe.calls.by_operation


async def test_a_platform_charge_found_indexed_waits_for_the_listings_in_flight_that_link_its_transfer():
    world = new_world(connected=1)
    ids = world.destination_charge(ORG)
    held = HeldListing(world.stripe, account=ORG)
    clock = Clock()
    enricher, indexer = enricher_and_indexer(held, clock)
    connected_listing = asyncio.ensure_future(indexer.ensure_charges(ORG, as_of=clock()))
    await indexer.ensure_charges(None, as_of=clock())  # the platform's listing indexed the charge
    await held.reached.wait()
    enriching = asyncio.ensure_future(enricher.enrich(ids["intent"], requested_at=clock()))
    for _ in range(100):  # yields only: time for the enrichment to end, had it not waited
        await asyncio.sleep(0)
    assert not enriching.done()
    held.release.set()
    found = await enriching
    await connected_listing
    assert isinstance(found, Findings)
    assert found.route == Route(RouteType.CONNECTED, destination_account_id=ORG)
    assert found.transfer_id == ids["transfer"]
    # The connected account's listing linked the transfer: reading it from Stripe cost no call.
    assert "transfers.retrieve" not in world.stripe.calls.by_operation


def two_payouts_on_one_account() -> tuple[World, str, str, str, str]:
    """(world, a charge, its payout, another payout of the account, the other's balance transaction)."""
    world = new_world(connected=1)
    charge_id, _, txn = world.charge_on(ORG)
    _, _, other_txn = world.charge_on(ORG)
    payout_id = world.pay_out([txn], on=ORG)
    other_payout = world.pay_out([other_txn], on=ORG, created=T_NOW - DAY + 60)
    return world, charge_id, payout_id, other_payout, other_txn


async def test_a_payment_goes_on_once_its_payout_is_listed_while_other_payouts_are_still_listed():
    world, charge_id, payout_id, other_payout, other_txn = two_payouts_on_one_account()
    held = HeldPayoutContents(world.stripe, payout_id=other_payout)
    clock = Clock()
    enricher, indexer = enricher_and_indexer(held, clock)
    # Returns while the other payout's contents are held (it waited for them before).
    found = await enricher.enrich(charge_id, requested_at=clock())
    assert isinstance(found, Findings)
    assert found.payout.payout_id == payout_id
    assert held.reached.is_set()
    assert not held.release.is_set()
    held.release.set()
    await indexer.wait_ahead()
    # Both payouts are listed once, and marked listed.
    assert world.stripe.calls.made("balance_transactions.list", account=ORG) == 2
    assert (await indexer.payout(other_payout, account=ORG))["balanceTransactions"] == [other_txn]


async def test_a_payment_waiting_for_its_link_goes_on_when_written_and_another_payouts_failure_is_not_its():
    world, charge_id, payout_id, other_payout, _ = two_payouts_on_one_account()
    own = HeldPayoutContents(world.stripe, payout_id=payout_id)
    other = HeldPayoutContents(own, payout_id=other_payout, fails=True)
    clock = Clock()
    enricher, indexer = enricher_and_indexer(other, clock)
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    enriching = asyncio.ensure_future(enricher.enrich(charge_id, requested_at=clock()))
    await own.reached.wait()
    await other.reached.wait()
    # Time for the charges' page to be indexed (the writes' 20 ms linger) and for the payment to
    # reach its wait for the link.
    await asyncio.sleep(0.2)
    assert not enriching.done()
    own.release.set()  # its payout's contents are listed and linked; the other's are still held
    found = await enriching
    assert isinstance(found, Findings)
    assert found.payout.payout_id == payout_id
    other.release.set()  # the other payout's contents fail now: the listing fails, not the payment
    await indexer.wait_ahead()
    with pytest.raises(StripeUnavailableError):
        await indexer.ensure_payouts(ORG, as_of=clock())  # the failed listing left the mark unmoved
    gc.collect()  # a future whose exception nobody retrieved reports it when collected
    assert unhandled == []
