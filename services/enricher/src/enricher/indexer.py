"""Building and refreshing the indexes from Stripe's paged lists, each refresh shared by every waiter.

A refresh of one index of one account (``charges``, ``payouts``) lists what was created after its
cursor (minus an overlap: objects created in the same second may list late). Concurrent messages
that need the same refresh wait for the one in flight (single flight); a refresh that started
after a message was requested has seen every payment that message can name, so it is not repeated.
"""

from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from enricher.accounts import account_display_name, has_manual_payouts
from enricher.deposits import OPEN_PAYOUT_STATUSES
from enricher.gateway import asking_ahead, listing_page, listing_payouts
from enricher.indexes import account_key, all_of, payment_documents, trimmed_charge
from enricher.routing import object_id
from otcommon.schemas import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from enricher.gateway import ListPage, StripeGateway
    from enricher.indexes import StripeIndex

_log = structlog.get_logger(__name__)

# The platform charges whose last transfer group lookup found no transfer, remembered per replica.
GROUPS_CHECKED_HELD = 10_000

SLICE_AFTER_PAGES = 8
SLICES_AT_MOST = 8
PAGES_PER_SLICE = 8
"""A charges listing still going after ``SLICE_AFTER_PAGES`` pages goes on in ``SLICES_AT_MOST``
slices of its ``created`` range at once, going back from where it stands, each as long as
``PAGES_PER_SLICE`` pages took so far, and the time before them as one more slice, which does the
same after its own first ``SLICE_AFTER_PAGES`` pages (``created_slices``). Stripe's pages come one
after the other (each names the last object of the one before), so a listing of a hundred pages,
the platform's in a cold start, took a hundred round trips in a row while the rate allowed more;
every platform payment waited for its end. A slice costs at most one call more than its pages
listed in a row (its last page is partly or, before the account's first charges, wholly empty);
short listings are never sliced."""

PAGES_INDEXED_AT_ONCE = 4
"""Listed pages whose writes may run at once while the next page is fetched. With one, a listing's
next page waited for the previous page's writes; in a cold start, with the whole backlog's work on
the same loop, those writes made the platform's long listing (a hundred pages, one after the
other) end seconds after the rate allowed."""


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """What the enricher needs of an account."""

    account_id: str
    name: str
    manual_payouts: bool


class SingleFlight:
    """Runs one task per key at a time; callers arriving meanwhile wait for that task.

    Each waiter waits on a future of its own, settled when the task ends: a waiter that stops
    waiting (its payment was indexed meanwhile, or its message abandoned) neither cancels the task
    nor costs the others anything. (``asyncio.shield`` per waiter did the same, but removing a
    cancelled waiter's callback from the shared task is linear in the waiters: with hundreds of
    messages each waiting for twenty listings, quadratic.)
    """

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` for ``key``, or wait for the run already in flight."""
        if key not in self._running:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            self._waiters[key] = set()
            task.add_done_callback(lambda done: self._finished(key, done))
        await self.join(key)

    def join(self, key: str) -> asyncio.Future[None]:
        """A waiter on the run of ``key`` in flight (one must be), counted from now, not from when awaited.

        A future, not a task: thousands of messages may wait on one run. A waiter that stops waiting
        is cancelled, and leaves the set.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters[key]
        waiters.add(waiter)
        waiter.add_done_callback(waiters.discard)
        return waiter

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        error = None if task.cancelled() else task.exception()
        for waiter in self._waiters.pop(key, set()):
            if waiter.done():
                continue
            if task.cancelled():
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(None)
        if error is not None:
            # Each waiter gets the failure; logged here too, since every waiter may have stopped
            # waiting (a message whose payment an earlier page indexed).
            _log.info("index refresh failed", flight=key, error=repr(error))

    async def wait_running(self, prefix: str) -> None:
        """Wait for the tasks in flight whose key starts with ``prefix``; raise the first failure."""
        # Joined at once: a run ending before the waits begin would take its waiters' set with it.
        await all_of([self.join(key) for key in self._running if key.startswith(prefix)])

    def running(self, key: str) -> bool:
        """Whether a task for ``key`` is in flight."""
        return key in self._running


class Indexer:
    """Keeps the Stripe index fresh enough for the payments being enriched."""

    def __init__(
        self,
        *,
        gateway: StripeGateway,
        index: StripeIndex,
        clock: Callable[[], datetime],
        overlap_seconds: int = 300,
        payout_freshness_seconds: int = 300,
    ) -> None:
        self._gateway = gateway
        self._index = index
        self._clock = clock
        self._overlap_seconds = overlap_seconds
        self._payout_freshness = timedelta(seconds=payout_freshness_seconds)
        self._flights = SingleFlight()
        # Refresh starts this process knows of, so a fresh index costs no Cosmos read to confirm.
        self._started: dict[str, datetime] = {}
        # When each refresh in flight started.
        self._running_since: dict[str, datetime] = {}
        # When the last transfer group lookup of a platform charge that found no transfer started.
        self._groups_checked: dict[str, datetime] = {}
        # Platform charges listed with a transfer group and no transfer, not looked up yet.
        self._groups_to_look_up: dict[str, str] = {}
        # Lookups and listings asked ahead of the messages that need them (a reference keeps each).
        self._asked_ahead: set[asyncio.Future[None]] = set()

    # -- accounts ------------------------------------------------------------------------------

    async def connected_accounts(self, *, as_of: datetime) -> list[str]:
        """The platform's connected accounts, listed again unless a listing started after ``as_of``."""
        await self._ensure("accounts", None, as_of=as_of, refresh=self._refresh_accounts)
        listed = await self._index.get("accounts")
        return list(listed["ids"]) if listed else []

    async def account(self, account: str | None) -> AccountFacts:
        """An account's name and payout schedule (the platform's for None), read from Stripe once."""
        key = f"account:{account_key(account)}"
        found = await self._index.get(key)
        if found is None:
            await self._flights.run(key, lambda: self._fetch_account(key, account))
            found = await self._index.get(key) or {}
        return AccountFacts(
            account_id=found["accountId"], name=found["name"], manual_payouts=found["manualPayouts"]
        )

    async def _fetch_account(self, key: str, account: str | None) -> None:
        if await self._index.get(key) is not None:
            return  # fetched by a flight that ended while this one was being started
        if account is None:
            raw = await self._gateway.retrieve_platform_account()
        else:
            raw = await self._gateway.retrieve_account(account)
        await self._put_account(key, raw)

    async def _put_account(self, key: str, raw: dict[str, Any]) -> dict[str, Any]:
        fields = {
            "kind": "account",
            "accountId": raw["id"],
            "name": account_display_name(account=raw),
            "manualPayouts": has_manual_payouts(account=raw),
        }
        await self._index.put(key, **fields)
        return {"id": key, **fields}

    async def _refresh_accounts(self, _: str | None) -> int | None:
        # Every payment needs the platform account: asked beside the accounts' first page, ahead of
        # the charge listings' pages in the rate gate's queue.
        await all_of((self._list_connected_accounts(), self.account(None)))
        return None

    async def _list_connected_accounts(self) -> None:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = await self._gateway.list_connected_accounts(starting_after=cursor)
            ids.extend(raw["id"] for raw in page.data)
            # The listing carries each account whole: its name costs no call of its own.
            await all_of(self._put_account(f"account:{raw['id']}", raw) for raw in page.data)
            if not page.has_more:
                break
            cursor = page.last_id
        await self._index.put("accounts", kind="accounts", ids=sorted(ids))

    # -- charges ---------------------------------------------------------------------------------

    async def charge_listings_in_flight(self) -> None:
        """Wait for this replica's charge listings in flight (they link platform charges to transfers)."""
        await self._flights.wait_running("charges:")

    async def ensure_charges(self, account: str | None, *, as_of: datetime) -> None:
        """Index the account's charges unless a refresh that started after ``as_of`` did."""
        await self._ensure("charges", account, as_of=as_of, refresh=self._refresh_charges)

    async def ensure_charges_of(self, accounts: Sequence[str | None], *, as_of: datetime) -> None:
        """``ensure_charges`` for every account at once.

        In a cold start thousands of messages wait for the same twenty listings; a task per message
        and account was most of the process's work while they waited. So a listing that is done, or
        in flight and started after ``as_of``, is waited for without a task, and the messages that
        need more (a mark to read, a listing to start) share one task per ``as_of`` (the messages
        of one sync are requested at the same moment).
        """
        as_of = min(as_of, self._clock())
        waits: list[asyncio.Future[None]] = []
        for account in accounts:
            key = f"charges:{account_key(account)}"
            started = self._started.get(key)
            if started is not None and started >= as_of:
                continue
            since = self._running_since.get(key)
            if since is None or since < as_of:
                sweep = f"charges-of:{as_of.isoformat()}:{','.join(map(account_key, accounts))}"
                await self._flights.run(
                    sweep, lambda: all_of(self.ensure_charges(each, as_of=as_of) for each in accounts)
                )
                return
            waits.append(self._flights.join(key))
        await all_of(waits)

    async def _refresh_charges(self, account: str | None) -> int | None:
        mark = await self._index.mark("charges", account)
        if mark.started_at is None:
            # The account's first listing: its payments are all still to enrich, and those whose
            # funds were paid out need its payouts' contents. Listed beside its charges, not after
            # them, so that its payments finish while the other listings go on.
            self._ask_ahead(self._list_payouts_ahead(account))
        created_after = None if mark.created_cursor is None else mark.created_cursor - self._overlap_seconds
        newest = mark.created_cursor

        async def index_page(charges: list[dict[str, Any]]) -> None:
            nonlocal newest
            documents: list[tuple[str, dict[str, Any]]] = []
            for charge in charges:
                trimmed = trimmed_charge(charge)
                documents.extend(payment_documents(trimmed, account=account))
                newest = max(newest or 0, int(trimmed["created"] or 0))
                if account is None and _names_a_separate_transfer(trimmed, listed_after=mark.created_cursor):
                    self._groups_to_look_up[trimmed["id"]] = trimmed["transfer_group"]
                if account is not None and isinstance(charge.get("source_transfer"), dict | str):
                    documents.extend(_transfer_documents(charge, account=account))
            await self._index.put_many(documents)

        async def list_page(cursor: str | None) -> ListPage:
            return await self._gateway.list_charges(
                account=account, created_after=created_after, starting_after=cursor
            )

        await _each_page(
            list_page,
            index_page,
            sliced=_Slicing(
                after=created_after, list_slice=lambda after, end: self._charges_between(account, after, end)
            ),
        )
        while len(self._groups_to_look_up) > GROUPS_CHECKED_HELD:
            del self._groups_to_look_up[next(iter(self._groups_to_look_up))]
        return newest

    def _charges_between(
        self, account: str | None, after: int | None, end: int
    ) -> Callable[[str | None], Awaitable[ListPage]]:
        async def list_page(cursor: str | None) -> ListPage:
            return await self._gateway.list_charges(
                account=account, created_after=after, created_before=end, starting_after=cursor
            )

        return list_page

    def look_up_groups_ahead(self) -> None:
        """Start the transfer group lookups the platform charges listed so far will need.

        Called once every account's charges were listed for a payment: the connected accounts'
        listed payments have linked the separate transfers made with their charges, so each listed
        platform charge with a ``transfer_group`` still without a ``transfer-of`` link is looked up
        now, beside the other listings (payouts, their contents), rather than when its own
        payment's message comes, often at the end of the queue. It is the same lookup that
        enrichment would ask after waiting for the same listings; the enrichment shares its result.
        """
        if not self._groups_to_look_up:
            return
        grouped = list(self._groups_to_look_up.items())
        self._groups_to_look_up.clear()
        self._ask_ahead(self._look_up_groups_ahead(grouped))

    def _ask_ahead(self, work: Coroutine[Any, Any, None]) -> None:
        ahead = asyncio.ensure_future(work)
        self._asked_ahead.add(ahead)
        ahead.add_done_callback(self._asked_ahead.discard)

    async def _look_up_groups_ahead(self, grouped: list[tuple[str, str]]) -> None:
        try:
            await self.charge_listings_in_flight()
            await all_of(
                self.transfer_in_group(charge_id=charge, transfer_group=group) for charge, group in grouped
            )
        except Exception as error:  # noqa: BLE001 - asked ahead only: each enrichment asks again if needed
            _log.info("transfer group lookups ahead failed", error=repr(error))

    async def wait_ahead(self) -> None:
        """Wait for the lookups and listings asked ahead and still in flight."""
        while self._asked_ahead:
            await asyncio.wait(set(self._asked_ahead))

    async def transfer_in_group(
        self, *, charge_id: str, transfer_group: str, as_of: datetime | None = None
    ) -> dict[str, Any] | None:
        """The ``transfer-of`` entry of a platform charge, found through its ``transfer_group``.

        For a separate transfer that no connected account's listing linked to its charge (the
        listing failed, or ran before the transfer was made): one ``GET /v1/transfers?transfer_group=``.
        A lookup in flight is shared; with ``as_of``, so is the last one that found no transfer,
        if it started at or after ``as_of`` (a transfer made since is linked by its
        ``transfer.created``).
        """
        key = f"transfer-of:{charge_id}"
        checked = self._groups_checked.get(charge_id)
        # A stamp ahead of this clock (another host's) must not make every lookup look too old.
        shared = as_of is not None and checked is not None and checked >= min(as_of, self._clock())
        if not shared or self._flights.running(key):
            await self._flights.run(key, lambda: self._find_group_transfer(charge_id, transfer_group))
        return await self._index.get(key)

    async def _find_group_transfer(self, charge_id: str, transfer_group: str) -> None:
        if await self._index.get(f"transfer-of:{charge_id}") is not None:
            return
        started = self._clock()
        grouped: list[dict[str, Any]] = []

        async def keep(transfers: list[dict[str, Any]]) -> None:
            grouped.extend(transfers)

        async def list_page(cursor: str | None) -> ListPage:
            return await self._gateway.list_transfers(transfer_group=transfer_group, starting_after=cursor)

        await _each_page(list_page, keep)
        # The transfer made from this charge; a group of one is this charge's even without the link.
        named = [t for t in grouped if object_id(t.get("source_transaction")) == charge_id]
        chosen = named or (grouped if len(grouped) == 1 else [])
        if not chosen or not object_id(chosen[0].get("destination_payment")):
            self._groups_checked.pop(charge_id, None)  # the newest last
            self._groups_checked[charge_id] = started
            while len(self._groups_checked) > GROUPS_CHECKED_HELD:
                del self._groups_checked[next(iter(self._groups_checked))]
            return
        transfer = chosen[0]
        await self.link_transfer(
            transfer_id=transfer["id"],
            charge_id=charge_id,
            destination=str(object_id(transfer.get("destination"))),
            destination_payment=str(object_id(transfer.get("destination_payment"))),
        )

    async def link_transfer(
        self, *, transfer_id: str, charge_id: str, destination: str, destination_payment: str
    ) -> None:
        """Index a separate transfer as made from a platform charge (``transfer:`` and ``transfer-of:``)."""
        fields = {"destination": destination, "destinationPayment": destination_payment}
        await self._index.put(
            f"transfer:{transfer_id}", kind="transfer", sourceTransaction=charge_id, **fields
        )
        await self._index.put(f"transfer-of:{charge_id}", kind="transfer-of", transfer=transfer_id, **fields)

    async def transfer(self, transfer_id: str) -> dict[str, Any]:
        """Where a platform transfer went: from the index, else from Stripe (then indexed)."""
        found = await self._index.get(f"transfer:{transfer_id}")
        if found is not None and found.get("destinationPayment"):
            return found
        raw = await self._gateway.retrieve_transfer(transfer_id)
        fields = {
            "kind": "transfer",
            "destination": object_id(raw.get("destination")),
            "destinationPayment": object_id(raw.get("destination_payment")),
            "sourceTransaction": object_id(raw.get("source_transaction")),
        }
        await self._index.put(f"transfer:{transfer_id}", **fields)
        return {"id": f"transfer:{transfer_id}", **fields}

    # -- payouts ---------------------------------------------------------------------------------

    async def ensure_payouts(self, account: str | None, *, as_of: datetime | None = None) -> None:
        """Index the account's new payouts and their contents, at most once per freshness window.

        With ``as_of``, unless a refresh started after it (``reindex`` passes now).
        """
        if as_of is None:
            as_of = self._clock() - self._payout_freshness
        await self._ensure("payouts", account, as_of=as_of, refresh=self._refresh_payouts)

    async def _list_payouts_ahead(self, account: str | None) -> None:
        try:
            if not (await self.account(account)).manual_payouts:
                with asking_ahead():  # behind the charges listings that every payment waits for
                    await self.ensure_payouts(account)
        except Exception as error:  # noqa: BLE001 - asked ahead only: each enrichment asks again if needed
            _log.info("payout listing ahead failed", account=account_key(account), error=repr(error))

    async def _refresh_payouts(self, account: str | None) -> int | None:
        with listing_payouts():  # behind the charges listings (``gateway.listing_payouts``)
            return await self._list_payouts(account)

    async def _list_payouts(self, account: str | None) -> int | None:
        mark = await self._index.mark("payouts", account)
        created_after = None if mark.created_cursor is None else mark.created_cursor - self._overlap_seconds
        newest = mark.created_cursor

        async def index_page(payouts: list[dict[str, Any]]) -> None:
            nonlocal newest
            newest = max([newest or 0, *(int(payout["created"]) for payout in payouts)])
            known = await asyncio.gather(*(self._index.get(f"payout:{payout['id']}") for payout in payouts))
            await all_of(self._put_payout(payout, account=account) for payout in payouts)
            for bank_account_id in _banks_of(payouts):
                # Every payment these payouts carried will name the bank: asked now, not after them
                # (``bank`` reads it from Stripe once; a bank indexed already costs no call).
                self._ask_ahead(self._bank_ahead(account, bank_account_id))
            unlisted = [
                payout["id"]
                for payout, held in zip(payouts, known, strict=True)
                if payout.get("automatic", True) and not (held and held.get("contentsIndexed"))
            ]
            await self._index_payout_contents(unlisted, account=account)

        async def list_page(cursor: str | None) -> ListPage:
            return await self._gateway.list_payouts(
                account=account, created_after=created_after, starting_after=cursor
            )

        await _each_page(list_page, index_page)
        return newest

    async def _index_payout_contents(self, payout_ids: list[str], *, account: str | None) -> None:
        """List what these payouts carried; as each list ends, link its contents, then mark it listed.

        A payment waiting for its link goes on as soon as its payout's links are written
        (``StripeIndex.watching``), not when every payout of the page is listed. The links of
        payouts listed at about the same time share batches (the coalescing container's rounds).
        """
        # Oldest first (a page lists the newest first): a backlog's messages come oldest first, and
        # the oldest payments wait for the oldest payouts.
        listed = await asyncio.gather(
            *(self._index_one_payout(payout_id, account=account) for payout_id in reversed(payout_ids)),
            return_exceptions=True,
        )
        for outcome in listed:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _index_one_payout(self, payout_id: str, *, account: str | None) -> None:
        contents = await self._payout_contents(payout_id, account=account)
        await self._index.put_many(
            (f"txn:{txn_id}", {"kind": "payout-item", "payout": payout_id, "account": account})
            for txn_id in contents
        )
        await self._index.put_payout_contents(payout_id, contents)

    async def _payout_contents(self, payout_id: str, *, account: str | None) -> list[str]:
        carried: list[str] = []

        async def keep(items: list[dict[str, Any]]) -> None:
            carried.extend(item["id"] for item in items)

        async def list_page(cursor: str | None) -> ListPage:
            return await self._gateway.list_payout_transactions(
                account=account, payout_id=payout_id, starting_after=cursor
            )

        await _each_page(list_page, keep)
        return carried

    async def _put_payout(self, payout: dict[str, Any], *, account: str | None) -> dict[str, Any]:
        return await self._index.put_payout(
            payout["id"],
            kind="payout",
            account=account,
            payoutId=payout["id"],
            status=payout["status"],
            arrivalDate=payout.get("arrival_date"),
            automatic=payout.get("automatic", True),
            destination=object_id(payout.get("destination")),
            created=payout.get("created"),
            checkedAt=format_timestamp(self._clock()),
        )

    async def payout_changed(self, payout: dict[str, Any], *, account: str | None) -> dict[str, Any]:
        """Index a payout as Stripe just gave it (never behind the stored state) and what it carried.

        The contents (``balance_transactions?payout=``) are listed once per automatic payout; the
        stored entry, with ``balanceTransactions``, is returned.
        """
        stored = await self._put_payout(payout, account=account)
        if stored.get("automatic", True) and "balanceTransactions" not in stored:
            await self._flights.run(
                f"contents:{payout['id']}",
                lambda: self._index_payout_contents([payout["id"]], account=account),
            )
            stored = await self._index.get(f"payout:{payout['id']}") or stored
        return stored

    async def payout(self, payout_id: str, *, account: str | None) -> dict[str, Any]:
        """A payout as indexed; an open one not checked within the freshness window is read again."""
        key = f"payout:{payout_id}"
        found = await self._index.get(key)
        if found is not None and not self._stale(found):
            return found
        await self._flights.run(key, lambda: self._recheck_payout(payout_id, account=account))
        return await self._index.get(key) or {}

    async def _recheck_payout(self, payout_id: str, *, account: str | None) -> None:
        await self._put_payout(
            await self._gateway.retrieve_payout(payout_id, account=account), account=account
        )

    def _stale(self, payout: dict[str, Any]) -> bool:
        if payout["status"] not in OPEN_PAYOUT_STATUSES:
            return False
        return parse_timestamp(payout["checkedAt"]) < self._clock() - self._payout_freshness

    async def bank(self, *, account_id: str, bank_account_id: str) -> dict[str, Any]:
        """A bank account's name and last 4, read from Stripe once."""
        key = f"bank:{bank_account_id}"
        found = await self._index.get(key)
        if found is None:
            await self._flights.run(key, lambda: self._fetch_bank(key, account_id, bank_account_id))
            found = await self._index.get(key) or {}
        return found

    async def _bank_ahead(self, account: str | None, bank_account_id: str) -> None:
        try:
            account_id = account or (await self.account(None)).account_id
            await self.bank(account_id=account_id, bank_account_id=bank_account_id)
        except Exception as error:  # noqa: BLE001 - asked ahead only: each enrichment asks again if needed
            _log.info("bank account ahead failed", account=account_key(account), error=repr(error))

    async def _fetch_bank(self, key: str, account_id: str, bank_account_id: str) -> None:
        if await self._index.get(key) is not None:
            return
        raw = await self._gateway.retrieve_bank_account(
            account_id=account_id, bank_account_id=bank_account_id
        )
        await self._index.put(key, kind="bank", bankName=raw.get("bank_name"), last4=raw.get("last4"))

    # -- shared ----------------------------------------------------------------------------------

    async def _ensure(
        self,
        index: str,
        account: str | None,
        *,
        as_of: datetime,
        refresh: Callable[[str | None], Awaitable[int | None]],
    ) -> None:
        key = f"{index}:{account_key(account)}"
        # A stamp ahead of this clock (another host's) must not make every refresh look too old.
        as_of = min(as_of, self._clock())

        async def run() -> None:
            started = self._running_since[key] = self._clock()
            try:
                newest = await refresh(account)
                await self._index.advance(index, account, created_cursor=newest, started_at=started)
                self._started[key] = max(started, self._started.get(key, started))
            finally:
                self._running_since.pop(key, None)
            _log.debug("index refreshed", index=index, account=account_key(account))

        # A refresh already in flight may have started before ``as_of``: then wait for it, and run again.
        while not await self._started_after(key, index, account, as_of):
            await self._flights.run(key, run)

    async def _started_after(self, key: str, index: str, account: str | None, as_of: datetime) -> bool:
        started = self._started.get(key)
        # While this replica's own refresh runs, waiting for it costs nothing; reading the mark again
        # for every message that arrives meanwhile would cost a read per message and account.
        if (started is None or started < as_of) and not self._flights.running(key):
            # Another replica may have refreshed since: its mark in Cosmos DB counts too (one point
            # read, shared by the messages asking at the same time).
            await self._flights.run(f"mark:{key}", lambda: self._recall_mark(key, index, account))
            started = self._started.get(key)
        return started is not None and started >= as_of

    async def _recall_mark(self, key: str, index: str, account: str | None) -> None:
        stored = (await self._index.mark(index, account, stored=True)).started_at
        started = self._started.get(key)
        if stored is not None and (started is None or stored > started):
            self._started[key] = stored


def _banks_of(payouts: list[dict[str, Any]]) -> set[str]:
    """The bank accounts that automatic payouts went to (a manual payout's payments are not traced)."""
    return {
        bank
        for payout in payouts
        if payout.get("automatic", True) and (bank := object_id(payout.get("destination")))
    }


def _names_a_separate_transfer(charge: dict[str, Any], *, listed_after: int | None) -> bool:
    """Whether a platform charge new to this listing may need its transfer group looked up.

    A charge with no ``transfer`` but a ``transfer_group``, created after the previous listing's
    newest charge (the overlap's charges were listed before, and their payments looked up then).
    """
    if charge.get("transfer") or not charge.get("transfer_group"):
        return False
    return listed_after is None or int(charge.get("created") or 0) > listed_after


def _transfer_documents(payment: dict[str, Any], *, account: str) -> list[tuple[str, dict[str, Any]]]:
    """A connected account's payment (py_) came from a platform transfer: where it went, and from what.

    Expanded, the transfer names the platform charge it paid for (separate charges and transfers).
    """
    source = payment["source_transfer"]
    transfer_id = object_id(source)
    fields = {"destination": account, "destinationPayment": payment["id"]}
    source_charge = object_id(source.get("source_transaction")) if isinstance(source, dict) else None
    transfer = {"kind": "transfer", "sourceTransaction": source_charge, **fields}
    documents = [(f"transfer:{transfer_id}", transfer)]
    if source_charge:
        documents.append(
            (f"transfer-of:{source_charge}", {"kind": "transfer-of", "transfer": transfer_id, **fields})
        )
    return documents


def created_slices(
    *, newest: int, oldest: int, pages: int, after: int | None
) -> list[tuple[int | None, int]]:
    """The ``created`` ranges a listing goes on in, as ``(after, before)`` (both excluded), once its
    first ``pages`` full pages went from ``newest`` back to ``oldest``: ``SLICES_AT_MOST`` going back
    from ``oldest`` (included: its charges not listed yet are in the first), each as long as
    ``PAGES_PER_SLICE`` pages took, then the rest down to ``after`` (the listing's own bound, None:
    none) as the last, unbounded, range. Ranges are whole seconds and do not overlap.
    """
    width = max(1, math.ceil(PAGES_PER_SLICE * (newest - oldest + 1) / max(1, pages)))
    end = oldest + 1
    slices: list[tuple[int | None, int]] = []
    while len(slices) < SLICES_AT_MOST and (after is None or end - 1 > after):
        start = end - width if after is None else max(after + 1, end - width)
        slices.append((start - 1, end))
        end = start
    if after is None or end - 1 > after:
        slices.append((after, end))
    return slices


@dataclass(frozen=True, slots=True)
class _Slicing:
    """How a listing goes on in ``created`` ranges (``created_slices``): its own lower bound
    (``after``, excluded) and how to list one range."""

    after: int | None
    list_slice: Callable[[int | None, int], Callable[[str | None], Awaitable[ListPage]]]


async def _each_slice(
    sliced: _Slicing,
    listed: tuple[int, int, int],
    index_page: Callable[[list[dict[str, Any]]], Awaitable[None]],
    *,
    first_number: int,
) -> None:
    """The rest of a listing whose first pages ``listed`` (newest, oldest, pages), in the ``created``
    ranges ``created_slices`` names, all at once; the last range slices itself again the same way."""
    newest, oldest, pages = listed
    ranges = created_slices(newest=newest, oldest=oldest, pages=pages, after=sliced.after)
    last = len(ranges) - 1
    await all_of(
        _each_page(
            sliced.list_slice(after, before),
            index_page,
            sliced=sliced if number == last else None,  # the oldest range: down to the listing's bound
            first_number=first_number,
        )
        for number, (after, before) in enumerate(ranges)
    )


@dataclass(slots=True)
class _Listed:
    """What a listing has listed so far: its pages and the newest and oldest ``created`` in them."""

    pages: int = 0
    newest: int | None = None
    oldest: int | None = None

    def add(self, page: ListPage) -> None:
        self.pages += 1
        created = [int(item["created"]) for item in page.data]
        if created:
            self.newest = max(created) if self.newest is None else max(self.newest, *created)
            self.oldest = min(created) if self.oldest is None else min(self.oldest, *created)


async def _each_page(
    list_page: Callable[[str | None], Awaitable[ListPage]],
    index_page: Callable[[list[dict[str, Any]]], Awaitable[None]],
    *,
    sliced: _Slicing | None = None,
    first_number: int = 1,
) -> None:
    """Index every listed page, the pages' writes running while the next pages are fetched.

    At most ``PAGES_INDEXED_AT_ONCE`` pages are being indexed at a time, and this returns once the
    last one is: the refresh's cursor moves only after that, so a crash mid-listing lists again from
    the old cursor, rewriting the same facts. With ``sliced``, a listing still going after
    ``SLICE_AFTER_PAGES`` pages goes on in ``created`` ranges at once (``created_slices``).
    """
    cursor: str | None = None
    listed = _Listed()
    indexing: collections.deque[asyncio.Future[None]] = collections.deque()
    try:
        number = first_number - 1
        while True:
            number += 1
            with listing_page(number):
                page = await list_page(cursor)
            if len(indexing) == PAGES_INDEXED_AT_ONCE:
                await indexing.popleft()
            indexing.append(asyncio.ensure_future(index_page(list(page.data))))
            if not page.has_more or page.last_id is None:
                break
            if sliced is not None:
                listed.add(page)
                if (
                    listed.pages == SLICE_AFTER_PAGES
                    and listed.newest is not None
                    and listed.oldest is not None
                ):
                    span = (listed.newest, listed.oldest, listed.pages)
                    await _each_slice(sliced, span, index_page, first_number=number + 1)
                    break
            cursor = page.last_id
        while indexing:
            await indexing.popleft()
    finally:
        if any(not pending.done() for pending in indexing):
            # A page failed: the writes of the others end before that failure is handled.
            await asyncio.gather(*indexing, return_exceptions=True)
