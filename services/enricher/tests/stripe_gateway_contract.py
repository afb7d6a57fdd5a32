"""What the enricher relies on from a StripeGateway, shared by the in-memory fake and the real gateway.

Each backend gives a ``stripe_facts`` fixture: a gateway and the facts of the world behind it, known
independently (the fake's own tables, the sandbox generator's ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from enricher.gateway import StripeObjectMissingError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from enricher.gateway import ListPage, StripeGateway


@dataclass(frozen=True, kw_only=True)
class StripeFacts:
    """A gateway and what its world holds."""

    gateway: StripeGateway
    platform_id: str
    connected: frozenset[str]
    busy_account: str | None
    """An account (None: the platform) whose charges fill more than one page."""
    charges_created: dict[str, int]
    """Every charge of ``busy_account``, with its ``created``."""
    direct_charge: tuple[str, str]
    """(connected account, charge id) of a charge only that account can read."""
    direct_intent: str
    """A PaymentIntent on the same account, with a latest charge."""
    payout: tuple[str, str, frozenset[str]]
    """(connected account, automatic payout id, the balance transactions it carried)."""
    payouts: frozenset[str]
    """Every payout of that account."""
    bank: tuple[str, str, str]
    """(account, bank account id, its last 4)."""
    separate_transfer: tuple[str, str, str, str]
    """(platform charge, its transfer_group, the transfer made from it, that transfer's destination)."""


async def every_page(list_page: Callable[[str | None], Awaitable[ListPage]]) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        page = await list_page(cursor)
        pages.append(page.data)
        if not page.has_more:
            return pages
        assert page.last_id is not None
        cursor = page.last_id


class StripeGatewayContract:
    """Needs the fixture ``stripe_facts`` (a StripeFacts)."""

    async def test_connected_accounts_are_listed_whole_across_pages(self, stripe_facts: StripeFacts):
        gateway = stripe_facts.gateway
        pages = await every_page(lambda cursor: gateway.list_connected_accounts(starting_after=cursor))
        listed = [account["id"] for page in pages for account in page]
        assert len(listed) == len(set(listed))
        assert set(listed) == stripe_facts.connected
        platform = await gateway.retrieve_platform_account()
        assert platform["id"] == stripe_facts.platform_id
        some = min(stripe_facts.connected)
        assert (await gateway.retrieve_account(some))["id"] == some

    async def test_charges_page_newest_first_with_their_balance_transaction_expanded(
        self, stripe_facts: StripeFacts
    ):
        gateway, account = stripe_facts.gateway, stripe_facts.busy_account

        async def page(cursor: str | None) -> ListPage:
            return await gateway.list_charges(account=account, created_after=None, starting_after=cursor)

        pages = await every_page(page)
        assert len(pages) > 1
        listed = [charge for each in pages for charge in each]
        ids = [charge["id"] for charge in listed]
        assert len(ids) == len(set(ids))
        assert set(ids) == set(stripe_facts.charges_created)
        created = [c["created"] for c in listed]
        assert created == sorted(created, reverse=True)
        for charge in listed:
            balance = charge["balance_transaction"]
            assert isinstance(balance, dict), charge["id"]
            assert {"id", "fee", "net", "available_on"} <= set(balance)

    async def test_created_after_lists_only_later_charges(self, stripe_facts: StripeFacts):
        gateway, account = stripe_facts.gateway, stripe_facts.busy_account
        times = sorted(set(stripe_facts.charges_created.values()))
        cutoff = times[len(times) // 2]

        async def page(cursor: str | None) -> ListPage:
            return await gateway.list_charges(account=account, created_after=cutoff, starting_after=cursor)

        listed = {charge["id"] for each in await every_page(page) for charge in each}
        expected = {charge for charge, created in stripe_facts.charges_created.items() if created > cutoff}
        assert expected
        assert listed == expected

    async def test_created_between_lists_only_the_charges_of_that_slice(self, stripe_facts: StripeFacts):
        gateway, account = stripe_facts.gateway, stripe_facts.busy_account
        times = sorted(set(stripe_facts.charges_created.values()))
        after, before = times[len(times) // 4], times[3 * len(times) // 4]

        async def page(cursor: str | None) -> ListPage:
            return await gateway.list_charges(
                account=account, created_after=after, created_before=before, starting_after=cursor
            )

        listed = [charge["id"] for each in await every_page(page) for charge in each]
        expected = {
            charge for charge, created in stripe_facts.charges_created.items() if after < created < before
        }
        assert expected
        assert sorted(listed) == sorted(expected)

    async def test_objects_are_read_only_from_the_account_that_owns_them(self, stripe_facts: StripeFacts):
        gateway = stripe_facts.gateway
        account, charge_id = stripe_facts.direct_charge
        charge = await gateway.retrieve_charge(charge_id, account=account)
        assert charge["id"] == charge_id
        assert isinstance(charge["balance_transaction"], dict)
        other = next(a for a in sorted(stripe_facts.connected) if a != account)
        for wrong in (None, other):
            with pytest.raises(StripeObjectMissingError):
                await gateway.retrieve_charge(charge_id, account=wrong)
        payout_account, payout_id, _ = stripe_facts.payout
        with pytest.raises(StripeObjectMissingError):
            await gateway.retrieve_payout(payout_id, account=None)
        with pytest.raises(StripeObjectMissingError):
            await gateway.retrieve_payout("po_doesnotexist", account=payout_account)

    async def test_a_payment_intent_comes_with_its_latest_charge_expanded(self, stripe_facts: StripeFacts):
        account, _ = stripe_facts.direct_charge
        intent = await stripe_facts.gateway.retrieve_payment_intent(
            stripe_facts.direct_intent, account=account
        )
        latest = intent["latest_charge"]
        assert isinstance(latest, dict)
        assert isinstance(latest["balance_transaction"], dict)
        assert latest["payment_intent"] == stripe_facts.direct_intent

    async def test_a_payout_lists_the_balance_transactions_it_carried(self, stripe_facts: StripeFacts):
        gateway = stripe_facts.gateway
        account, payout_id, carried = stripe_facts.payout

        async def page(cursor: str | None) -> ListPage:
            return await gateway.list_payout_transactions(
                account=account, payout_id=payout_id, starting_after=cursor
            )

        listed = [item["id"] for each in await every_page(page) for item in each]
        assert sorted(listed) == sorted(carried)
        payout = await gateway.retrieve_payout(payout_id, account=account)
        assert (payout["id"], payout["automatic"]) == (payout_id, True)
        assert payout["status"] in {"pending", "in_transit", "paid", "failed", "canceled"}

    async def test_payouts_are_listed_per_account(self, stripe_facts: StripeFacts):
        gateway = stripe_facts.gateway
        account, _, _ = stripe_facts.payout

        async def page(cursor: str | None) -> ListPage:
            return await gateway.list_payouts(account=account, created_after=None, starting_after=cursor)

        listed = [payout["id"] for each in await every_page(page) for payout in each]
        assert len(listed) == len(set(listed))
        assert set(listed) == stripe_facts.payouts

    async def test_a_separate_transfer_is_listed_by_its_transfer_group(self, stripe_facts: StripeFacts):
        gateway = stripe_facts.gateway
        charge_id, group, transfer_id, destination = stripe_facts.separate_transfer

        async def page(cursor: str | None) -> ListPage:
            return await gateway.list_transfers(transfer_group=group, starting_after=cursor)

        listed = [transfer for each in await every_page(page) for transfer in each]
        assert [transfer["id"] for transfer in listed] == [transfer_id]
        assert listed[0]["source_transaction"] == charge_id
        assert listed[0]["destination"] == destination
        assert listed[0]["destination_payment"]

        async def none(cursor: str | None) -> ListPage:
            return await gateway.list_transfers(transfer_group="order_no_such_group", starting_after=cursor)

        assert await every_page(none) == [[]]

    async def test_a_bank_account_is_read_under_its_account(self, stripe_facts: StripeFacts):
        gateway = stripe_facts.gateway
        account, bank_id, last4 = stripe_facts.bank
        bank = await gateway.retrieve_bank_account(account_id=account, bank_account_id=bank_id)
        assert (bank["id"], bank["last4"]) == (bank_id, last4)
        assert bank["bank_name"]
        with pytest.raises(StripeObjectMissingError):
            await gateway.retrieve_bank_account(account_id=account, bank_account_id="ba_doesnotexist")
