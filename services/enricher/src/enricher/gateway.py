"""The Stripe calls the enricher makes, behind one small interface (``stripe_api`` is the real one).

Objects travel as plain JSON dicts, so the rules in ``routing``/``findings`` never see an SDK type.
``account=None`` means the platform's own objects (no ``Stripe-Account`` header).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

StripeObject = dict[str, Any]

PLATFORM_KEY = "platform"
"""How call counts and indexes name the platform's own objects."""

_RANK: contextvars.ContextVar[int] = contextvars.ContextVar("call_rank", default=0)
_PAGES_LISTED: contextvars.ContextVar[int] = contextvars.ContextVar("pages_listed", default=0)
_PAYOUTS, _AHEAD = 1, 2  # call ranks; 0: the other calls a message waits for


@contextlib.contextmanager
def _set_within(var: contextvars.ContextVar[int], value: int) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        # A coroutine whose loop was closed under it is closed later by the garbage collector, in
        # whatever context runs then: the token is not that context's, nor is that context ours to
        # change. (The context it was set in is gone with the coroutine's task.)
        with contextlib.suppress(ValueError):
            var.reset(token)


@contextlib.contextmanager
def _ranked(rank: int) -> Iterator[None]:
    with _set_within(_RANK, max(rank, _RANK.get())):
        yield


@contextlib.contextmanager
def asking_ahead() -> Iterator[None]:
    """Calls made within (and in tasks started within) are asked ahead of any message's need.

    A gateway may let them wait behind the calls a message is waiting for (the rate gate does).
    """
    with _ranked(_AHEAD):
        yield


@contextlib.contextmanager
def listing_payouts() -> Iterator[None]:
    """Calls made within (and in tasks started within) list payouts, their contents and banks.

    A gateway may let them wait behind the other calls a message waits for (the rate gate does): an
    account's charges listing holds up every payment of the account (the platform's, every platform
    charge, which waits for every listing), a payout's contents only the payments that payout carried.
    With a cold start's whole backlog in flight, both were waited for and went in turns, and the
    charges ended last.
    """
    with _ranked(_PAYOUTS):
        yield


@contextlib.contextmanager
def listing_page(number: int) -> Iterator[None]:
    """The call made within asks for page ``number`` (from 1) of a listing.

    A gateway may let the later pages of long listings go first (the rate gate does): a listing's
    pages come one after the other, so the longest listing is the one every waiter waits for.
    """
    with _set_within(_PAGES_LISTED, number - 1):
        yield


def call_priority() -> tuple[int, int]:
    """The order in which calls waiting together should go, lowest first.

    Calls a message waits for before payout listings (``listing_payouts``), and those before calls
    asked ahead (``asking_ahead``); within each, the next page of the listing that has listed the
    most pages (``listing_page``) first.
    """
    return (_RANK.get(), -_PAGES_LISTED.get())


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a Stripe list: its objects (newest first, as Stripe lists them) and whether more follow."""

    data: list[StripeObject]
    has_more: bool

    @property
    def last_id(self) -> str | None:
        """The cursor (``starting_after``) for the next page."""
        return str(self.data[-1]["id"]) if self.data else None


class StripeGatewayError(Exception):
    """A Stripe call failed; the subclass says whether waiting helps."""

    def __init__(self, description: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(description)
        # Built from the call and Stripe's error code, never from Stripe's message (it may quote input).
        self.description = description
        self.status = status
        self.code = code


class StripeObjectMissingError(StripeGatewayError):
    """The object is not visible from this account (Stripe's ``resource_missing``)."""


class StripeUnavailableError(StripeGatewayError):
    """Stripe could not answer now (rate limit after retries, 5xx, network): retry later."""

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(description, status=status, code=code)
        self.retry_after_seconds = retry_after_seconds


class StripeAccessDeniedError(StripeGatewayError):
    """The key is invalid, revoked or lacks a permission: no retry will help until someone fixes it."""


class StripeRequestRejectedError(StripeGatewayError):
    """Stripe refused the request as malformed: a bug or bad data, never retried."""


@dataclass
class CallCounter:
    """Stripe calls made, by operation and by account: the enricher's budget, shown by tests and the CLI."""

    by_operation: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    by_operation_and_account: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, operation: str, *, account: str | None) -> None:
        """Count one call."""
        self.by_operation[operation] += 1
        self.by_account[account or PLATFORM_KEY] += 1
        self.by_operation_and_account[operation, account or PLATFORM_KEY] += 1

    def made(self, operation: str, *, account: str | None) -> int:
        """The calls of one operation made on one account (None: the platform)."""
        return self.by_operation_and_account[operation, account or PLATFORM_KEY]

    @property
    def total(self) -> int:
        """Every call counted."""
        return sum(self.by_operation.values())

    def to_json(self) -> dict[str, Any]:
        """The counts as the CLI prints them."""
        return {
            "total": self.total,
            "byOperation": dict(sorted(self.by_operation.items())),
            "byAccount": dict(sorted(self.by_account.items())),
        }


class StripeGateway(Protocol):
    """Every Stripe call the enricher makes."""

    @property
    def calls(self) -> CallCounter:
        """The calls made so far."""
        ...

    async def retrieve_platform_account(self) -> StripeObject:
        """The platform's own account (``GET /v1/account``)."""
        ...

    async def retrieve_account(self, account_id: str) -> StripeObject:
        """A connected account (``GET /v1/accounts/{id}``)."""
        ...

    async def list_connected_accounts(self, *, starting_after: str | None) -> ListPage:
        """One page of the platform's connected accounts."""
        ...

    async def retrieve_bank_account(self, *, account_id: str, bank_account_id: str) -> StripeObject:
        """An account's bank account (``GET /v1/accounts/{id}/external_accounts/{ba}``)."""
        ...

    async def retrieve_payment_intent(self, payment_intent_id: str, *, account: str | None) -> StripeObject:
        """A PaymentIntent, with ``latest_charge.balance_transaction`` expanded."""
        ...

    async def retrieve_charge(self, charge_id: str, *, account: str | None) -> StripeObject:
        """A charge, with ``balance_transaction`` expanded."""
        ...

    async def retrieve_balance_transaction(self, transaction_id: str, *, account: str | None) -> StripeObject:
        """A balance transaction."""
        ...

    async def retrieve_transfer(self, transfer_id: str) -> StripeObject:
        """A platform transfer to a connected account."""
        ...

    async def retrieve_payout(self, payout_id: str, *, account: str | None) -> StripeObject:
        """A payout."""
        ...

    async def list_transfers(self, *, transfer_group: str, starting_after: str | None) -> ListPage:
        """One page (100) of the platform's transfers in a ``transfer_group``."""
        ...

    async def list_charges(
        self,
        *,
        account: str | None,
        created_after: int | None,
        starting_after: str | None,
        created_before: int | None = None,
    ) -> ListPage:
        """One page (100) of the account's charges created after a time (and before one), newest first.

        ``balance_transaction`` and ``source_transfer`` come expanded.
        """
        ...

    async def list_payouts(
        self, *, account: str | None, created_after: int | None, starting_after: str | None
    ) -> ListPage:
        """One page (100) of the account's payouts created after a time."""
        ...

    async def list_payout_transactions(
        self, *, account: str | None, payout_id: str, starting_after: str | None
    ) -> ListPage:
        """One page (100) of the balance transactions an automatic payout carried."""
        ...

    async def close(self) -> None:
        """Release the HTTP connections."""
        ...
