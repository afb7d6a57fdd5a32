"""``refresh-payouts`` and ``reindex``: bring open payouts and the indexes up to date outside the queue."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from enricher.deposits import DepositStatus, deposit_status
from enricher.payouts import PayoutOutcome
from otcommon.enrichment import EnrichmentState

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from enricher.handler import EnrichmentHandler
    from enricher.indexer import Indexer
    from enricher.payouts import PayoutChanges
    from otcommon.store import DocumentContainer

OPEN_DEPOSITS = (
    "SELECT c.PaymentID, c.stripePayoutId FROM c "
    "WHERE c.enrichmentState = @state AND c.depositStatus = @deposit"
)
"""Transactions whose money is not in a finished payout yet (funds pending, or payout pending/in transit).

Not DISTINCT: a cross-partition DISTINCT cannot resume from a continuation; duplicates are dropped here.
"""


@dataclass
class RefreshReport:
    """What a refresh looked at and what came out."""

    payouts: int = 0
    """Open payouts read again and applied (the same path as a ``payout.*`` webhook)."""
    payments: int = 0
    """Payments enriched again, through their payout or on their own."""
    by_outcome: Counter[str] = field(default_factory=Counter)
    """Payments by the deposit status they ended with (``unresolved`` for those no account knows)."""


async def refresh_open_payouts(
    *,
    transactions: DocumentContainer,
    handler: EnrichmentHandler,
    payouts: PayoutChanges,
    clock: Callable[[], datetime],
) -> RefreshReport:
    """Apply every open payout's current state; enrich again the payments not in a payout yet.

    An open payout goes through ``PayoutChanges`` (one read of the payout, then its payments from
    the indexes), as a webhook would have it. A payment not in a payout yet is enriched again: the
    enrichment lists an account's new payouts at most once per freshness window.
    """
    report = RefreshReport()
    parameters = {"@state": EnrichmentState.ENRICHED.value, "@deposit": DepositStatus.PENDING.value}
    open_payouts: set[str] = set()
    unpaid: set[str] = set()
    async for page in transactions.query(OPEN_DEPOSITS, parameters=parameters):
        for item in page.items:
            if item.get("stripePayoutId"):
                open_payouts.add(str(item["stripePayoutId"]))
            elif item.get("PaymentID"):
                unpaid.add(str(item["PaymentID"]))
    for payout_id in sorted(open_payouts):
        result = await payouts.refresh(payout_id)
        if result is None or result.outcome is not PayoutOutcome.APPLIED:
            continue
        report.payouts += 1
        report.payments += result.payments
        report.by_outcome[deposit_status(payout_status=result.status).value] += result.payments
    for payment_id in sorted(unpaid):
        enriched = await handler.enrich(payment_id, requested_at=clock())
        outcome = getattr(enriched, "deposit_status", None)
        report.by_outcome[outcome.value if outcome is not None else "unresolved"] += 1
        report.payments += 1
    return report


async def reindex(*, indexer: Indexer, account: str | None, clock: Callable[[], datetime]) -> list[str]:
    """List again the charges and payouts of one account, or of the platform and every connected account."""
    now = clock()
    accounts: list[str | None] = (
        [account] if account else [None, *await indexer.connected_accounts(as_of=now)]
    )
    for each in accounts:
        await indexer.ensure_charges(each, as_of=now)
        await indexer.ensure_payouts(each, as_of=now)
    return [each or "platform" for each in accounts]
