"""An in-memory StripeGateway: objects scoped to the account that owns them, lists paged like Stripe."""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from typing import TYPE_CHECKING

from enricher.gateway import (
    PLATFORM_KEY,
    CallCounter,
    ListPage,
    StripeAccessDeniedError,
    StripeObject,
    StripeObjectMissingError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


class FakeStripe:
    """A Stripe world held in dicts; each call is counted like the real gateway counts it."""

    def __init__(self, *, platform: StripeObject, page_size: int = 100) -> None:
        self.platform = platform
        self.page_size = page_size
        self.connected: dict[str, StripeObject] = {}
        self.revoked = False
        self.failure: Exception | None = None
        """Raised by every call while set (an outage, a rate limit that outlasted the retries)."""
        self.expand_source_transfer = True
        self.charge_listings: list[tuple[str | None, int | None]] = []
        self.charge_slices: list[tuple[str | None, int | None, int]] = []
        """(account, created after, created before) of each page listed within a ``created`` slice."""
        self._calls = CallCounter()
        # (account key, object kind) -> id -> object
        self._objects: dict[tuple[str, str], dict[str, StripeObject]] = defaultdict(dict)
        self._payout_transactions: dict[str, list[str]] = {}
        self._banks: dict[tuple[str, str], StripeObject] = {}

    # -- building the world ---------------------------------------------------------------------

    def add_account(self, account: StripeObject) -> None:
        self.connected[account["id"]] = account

    def add(self, kind: str, obj: StripeObject, *, account: str | None = None) -> None:
        self._objects[(account or PLATFORM_KEY, kind)][obj["id"]] = obj

    def add_payout(
        self,
        payout: StripeObject,
        *,
        account: str | None = None,
        transactions: Sequence[str] = (),
    ) -> None:
        self.add("payout", payout, account=account)
        self._payout_transactions[payout["id"]] = list(transactions)

    def move_payout(self, payout_id: str, *, account: str | None = None, **changes: object) -> None:
        """Change a payout as Stripe would (its status, arrival date): what later reads return."""
        self._objects[(account or PLATFORM_KEY, "payout")][payout_id].update(changes)

    def add_bank_account(self, bank: StripeObject, *, account_id: str) -> None:
        self._banks[(account_id, bank["id"])] = bank

    # -- the gateway ----------------------------------------------------------------------------

    @property
    def calls(self) -> CallCounter:
        return self._calls

    async def retrieve_platform_account(self) -> StripeObject:
        await self._count("accounts.retrieve_current", None)
        return copy.deepcopy(self.platform)

    async def retrieve_account(self, account_id: str) -> StripeObject:
        await self._count("accounts.retrieve", None)
        if account_id not in self.connected:
            raise StripeObjectMissingError(f"no account {account_id}", status=404, code="resource_missing")
        return copy.deepcopy(self.connected[account_id])

    async def list_connected_accounts(self, *, starting_after: str | None) -> ListPage:
        await self._count("accounts.list", None)
        return self._paged(sorted(self.connected.values(), key=lambda a: a["id"]), starting_after)

    async def retrieve_bank_account(self, *, account_id: str, bank_account_id: str) -> StripeObject:
        await self._count("external_accounts.retrieve", account_id)
        try:
            return copy.deepcopy(self._banks[(account_id, bank_account_id)])
        except KeyError:
            raise StripeObjectMissingError(
                "no such bank account", status=404, code="resource_missing"
            ) from None

    async def retrieve_payment_intent(self, payment_intent_id: str, *, account: str | None) -> StripeObject:
        await self._count("payment_intents.retrieve", account)
        intent = self._get("payment_intent", payment_intent_id, account)
        charge_id = intent.get("latest_charge")
        if isinstance(charge_id, str):
            intent["latest_charge"] = self._expanded_charge(self._get("charge", charge_id, account), account)
        return intent

    async def retrieve_charge(self, charge_id: str, *, account: str | None) -> StripeObject:
        await self._count("charges.retrieve", account)
        return self._expanded_charge(self._get("charge", charge_id, account), account)

    async def retrieve_balance_transaction(self, transaction_id: str, *, account: str | None) -> StripeObject:
        await self._count("balance_transactions.retrieve", account)
        return self._get("balance_transaction", transaction_id, account)

    async def retrieve_transfer(self, transfer_id: str) -> StripeObject:
        await self._count("transfers.retrieve", None)
        return self._get("transfer", transfer_id, None)

    async def retrieve_payout(self, payout_id: str, *, account: str | None) -> StripeObject:
        await self._count("payouts.retrieve", account)
        return self._get("payout", payout_id, account)

    async def list_transfers(self, *, transfer_group: str, starting_after: str | None) -> ListPage:
        await self._count("transfers.list", None)
        transfers = self._newest_first("transfer", None, None)
        grouped = [t for t in transfers if t.get("transfer_group") == transfer_group]
        return self._paged(grouped, starting_after)

    async def list_charges(
        self,
        *,
        account: str | None,
        created_after: int | None,
        starting_after: str | None,
        created_before: int | None = None,
    ) -> ListPage:
        await self._count("charges.list", account)
        self.charge_listings.append((account, created_after))
        charges = self._newest_first("charge", account, created_after)
        if created_before is not None:
            self.charge_slices.append((account, created_after, created_before))
            charges = [charge for charge in charges if charge["created"] < created_before]
        page = self._paged(charges, starting_after)
        return ListPage([self._expanded_charge(c, account, listed=True) for c in page.data], page.has_more)

    async def list_payouts(
        self, *, account: str | None, created_after: int | None, starting_after: str | None
    ) -> ListPage:
        await self._count("payouts.list", account)
        return self._paged(self._newest_first("payout", account, created_after), starting_after)

    async def list_payout_transactions(
        self, *, account: str | None, payout_id: str, starting_after: str | None
    ) -> ListPage:
        await self._count("balance_transactions.list", account)
        self._get("payout", payout_id, account)
        transactions = [
            self._get("balance_transaction", txn_id, account)
            for txn_id in self._payout_transactions[payout_id]
        ]
        return self._paged(transactions, starting_after)

    async def close(self) -> None:
        return None

    # -- helpers --------------------------------------------------------------------------------

    async def _count(self, operation: str, account: str | None) -> None:
        self._calls.record(operation, account=account)
        # Yield as a network call would, so concurrent callers really interleave.
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure
        if self.revoked:
            raise StripeAccessDeniedError(f"{operation}: key revoked", status=401, code=None)

    def _get(self, kind: str, object_id: str, account: str | None) -> StripeObject:
        try:
            return copy.deepcopy(self._objects[(account or PLATFORM_KEY, kind)][object_id])
        except KeyError:
            raise StripeObjectMissingError(
                f"no {kind} {object_id} on {account or PLATFORM_KEY}", status=404, code="resource_missing"
            ) from None

    def _expanded_charge(
        self, charge: StripeObject, account: str | None, *, listed: bool = False
    ) -> StripeObject:
        charge = copy.deepcopy(charge)
        if isinstance(txn_id := charge.get("balance_transaction"), str):
            charge["balance_transaction"] = self._get("balance_transaction", txn_id, account)
        if (
            isinstance(transfer_id := charge.get("source_transfer"), str)
            and listed
            and self.expand_source_transfer
        ):
            # Transfers live on the platform; Stripe expands them on the connected account's payment.
            charge["source_transfer"] = self._get("transfer", transfer_id, None)
        return charge

    def _newest_first(self, kind: str, account: str | None, created_after: int | None) -> list[StripeObject]:
        objects = self._objects[(account or PLATFORM_KEY, kind)].values()
        chosen = [o for o in objects if created_after is None or o["created"] > created_after]
        return sorted(chosen, key=lambda o: (o["created"], o["id"]), reverse=True)

    def _paged(self, objects: list[StripeObject], starting_after: str | None) -> ListPage:
        start = 0
        if starting_after is not None:
            start = next(i for i, o in enumerate(objects) if o["id"] == starting_after) + 1
        chunk = objects[start : start + self.page_size]
        return ListPage([copy.deepcopy(o) for o in chunk], has_more=start + self.page_size < len(objects))
