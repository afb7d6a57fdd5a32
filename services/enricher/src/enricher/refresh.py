"""``refresh-payouts`` and ``reindex``: bring open payouts and the indexes up to date outside the queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otcommon.enrichment import EnrichmentState

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from enricher.handler import EnrichmentHandler
    from enricher.indexer import Indexer
    from otcommon.store import DocumentContainer

OPEN_DEPOSITS = "SELECT c.PaymentID FROM c WHERE c.enrichmentState = @state AND c.depositStatus = @deposit"
"""Transactions whose money is not in a finished payout yet (funds pending, or payout pending/in transit).

Not DISTINCT: a cross-partition DISTINCT cannot resume from a continuation; duplicates are dropped here.
"""


@dataclass
class RefreshReport:
    """What a refresh looked at and what came out."""

    payments: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


async def refresh_open_payouts(
    *, transactions: DocumentContainer, handler: EnrichmentHandler, clock: Callable[[], datetime]
) -> RefreshReport:
    """Enrich again every payment whose deposit is pending: its payout may exist or have moved since.

    The enrichment path itself reads an open payout again once its freshness window passed, and
    lists an account's new payouts at most once per window, so this costs one round of those.
    """
    report = RefreshReport()
    parameters = {"@state": EnrichmentState.ENRICHED.value, "@deposit": "pending"}
    payment_ids: set[str] = set()
    async for page in transactions.query(OPEN_DEPOSITS, parameters=parameters):
        payment_ids.update(str(item["PaymentID"]) for item in page.items if item.get("PaymentID"))
    for payment_id in sorted(payment_ids):
        result = await handler.enrich(payment_id, requested_at=clock())
        outcome = getattr(result, "deposit_status", None)
        key = outcome.value if outcome is not None else "unresolved"
        report.by_outcome[key] = report.by_outcome.get(key, 0) + 1
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
