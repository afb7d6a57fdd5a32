"""A payout changed: its index entry brought up to Stripe's state, every payment it carried enriched again.

One path for every way the enricher learns that a payout moved: a ``StripePayoutChanged`` message
(the ``payout.*`` webhooks) and ``refresh-payouts``. Out of order safe twice over: an event whose
status is behind the stored one is dropped without a call, and otherwise the payout is read again
from Stripe (on the account the event names), so the state applied is Stripe's current one, never
the event's; the index and the transactions then only move forward (``deposits.payout_status_is_behind``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from enricher.deposits import payout_status_is_behind
from enricher.gateway import StripeObjectMissingError
from otcommon.messages import TransactionChange

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from enricher.gateway import StripeGateway
    from enricher.indexer import Indexer
    from enricher.indexes import StripeIndex
    from otcommon.store import DocumentContainer

TRANSACTIONS_BY_BALANCE_TRANSACTION = (
    "SELECT c.PaymentID FROM c WHERE ARRAY_CONTAINS(@balanceTransactions, c.stripeBalanceTransactionId)"
)
"""The enriched transactions whose money one of these balance transactions carries (cross-partition).

Not DISTINCT: a cross-partition DISTINCT cannot resume from a continuation; duplicates are dropped here.
"""

_IDS_PER_QUERY = 100  # keeps each query's parameters small; a payout may carry thousands
_PAYMENTS_AT_ONCE = 8  # payments of one payout enriched concurrently (index reads and writes only)


class PayoutOutcome(StrEnum):
    """What applying a payout change did."""

    APPLIED = "applied"
    """The index holds Stripe's state; every enriched payment the payout carried was enriched again."""
    STALE = "stale"
    """The reported status is behind the one the enricher holds: nothing to do, no call made."""
    NOT_FOUND = "not_found"
    """Stripe does not know the payout on that account: nothing to apply it to."""
    NOT_TRACEABLE = "not_traceable"
    """A manual payout: Stripe does not list what it carried, its payments stay ``not_traceable``."""


@dataclass(frozen=True, slots=True)
class PayoutChangeResult:
    """The outcome, the payout status now held, and how many payments were enriched again."""

    outcome: PayoutOutcome
    status: str | None = None
    payments: int = 0


class PaymentReenricher(Protocol):
    """Enriches one payment again and writes it (``EnrichmentHandler.enrich``)."""

    async def enrich(
        self, payment_id: str, *, requested_at: datetime, reannounce: bool = False, change: TransactionChange
    ) -> object:
        """Derive the payment's facts from the indexes and write them; raise on failure."""
        ...


class PayoutChanges:
    """Applies payout changes to the payout index and to the transactions the payout carried."""

    def __init__(
        self,
        *,
        gateway: StripeGateway,
        index: StripeIndex,
        indexer: Indexer,
        transactions: DocumentContainer,
        payments: PaymentReenricher,
        clock: Callable[[], datetime],
    ) -> None:
        self._gateway = gateway
        self._index = index
        self._indexer = indexer
        self._transactions = transactions
        self._payments = payments
        self._clock = clock

    async def apply(
        self,
        payout_id: str,
        *,
        account: str | None,
        reported_status: str | None = None,
        reannounce: bool = False,
    ) -> PayoutChangeResult:
        """Bring the payout and its payments up to Stripe's state (``reported_status``: the event's)."""
        known = await self._index.get(f"payout:{payout_id}")
        if known is not None and payout_status_is_behind(reported_status, than=known.get("status")):
            return PayoutChangeResult(PayoutOutcome.STALE, status=known.get("status"))
        try:
            payout = await self._gateway.retrieve_payout(payout_id, account=account)
        except StripeObjectMissingError:
            return PayoutChangeResult(PayoutOutcome.NOT_FOUND)
        stored = await self._indexer.payout_changed(payout, account=account)
        if not stored.get("automatic", True):
            return PayoutChangeResult(PayoutOutcome.NOT_TRACEABLE, status=stored.get("status"))
        payment_ids = await self.payments_carried(stored.get("balanceTransactions") or [])
        await self._enrich_all(payment_ids, reannounce=reannounce)
        status = stored.get("status")
        return PayoutChangeResult(PayoutOutcome.APPLIED, status=status, payments=len(payment_ids))

    async def refresh(self, payout_id: str) -> PayoutChangeResult | None:
        """Apply a payout's current state, on the account the index holds it under (None: not indexed)."""
        known = await self._index.get(f"payout:{payout_id}")
        if known is None:
            return None
        return await self.apply(payout_id, account=known.get("account"))

    async def payments_carried(self, balance_transactions: Sequence[str]) -> list[str]:
        """The PaymentIDs of the enriched transactions whose money these balance transactions carry."""
        payment_ids: set[str] = set()
        for start in range(0, len(balance_transactions), _IDS_PER_QUERY):
            chunk = list(balance_transactions[start : start + _IDS_PER_QUERY])
            async for page in self._transactions.query(
                TRANSACTIONS_BY_BALANCE_TRANSACTION, parameters={"@balanceTransactions": chunk}
            ):
                payment_ids.update(str(item["PaymentID"]) for item in page.items if item.get("PaymentID"))
        return sorted(payment_ids)

    async def _enrich_all(self, payment_ids: Sequence[str], *, reannounce: bool) -> None:
        gate = asyncio.Semaphore(_PAYMENTS_AT_ONCE)
        requested_at = self._clock()

        async def enrich(payment_id: str) -> None:
            async with gate:
                await self._payments.enrich(
                    payment_id,
                    requested_at=requested_at,
                    reannounce=reannounce,
                    change=TransactionChange.PAYOUT,
                )

        # Every payment is tried; the first failure then decides the message's outcome.
        results = await asyncio.gather(*(enrich(p) for p in payment_ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
