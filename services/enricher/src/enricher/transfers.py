"""A transfer was made: the platform charge it paid for routes to the organizer, its payments enriched again.

Separate charges and transfers: OpenTickets may transfer an organizer's money hours after the charge,
when the payment was already enriched as the platform's (no transfer existed yet). Stripe's
``transfer.created``, handed over by the webhook service as ``StripeTransferCreated``, links the
transfer to its charge in the index (``transfer:``, ``transfer-of:``), then each PaymentID of that
charge (its charge id and its PaymentIntent id) is enriched again through the usual path, which now
follows the transfer. What a transfer says of its route (destination, destination payment, source
charge) never changes after it is made, so the event's copy is indexed as it is: no Stripe call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from otcommon.messages import TransactionChange

if TYPE_CHECKING:
    from enricher.indexer import Indexer
    from enricher.indexes import StripeIndex
    from enricher.payouts import PaymentReenricher
    from otcommon.messages import StripeTransferCreated


class TransferOutcome(StrEnum):
    """What applying a new transfer did."""

    APPLIED = "applied"
    """Linked to its charge; the charge's payments were enriched again."""
    NOT_ENRICHED_YET = "not_enriched_yet"
    """Linked; the charge is not indexed: no payment was enriched from it yet (its enrichment reads this)."""
    UNLINKED = "unlinked"
    """No source charge or no destination payment: nothing routes through it."""


@dataclass(frozen=True, slots=True)
class TransferChangeResult:
    """The outcome and how many PaymentIDs were enriched again."""

    outcome: TransferOutcome
    payments: int = 0


class TransferChanges:
    """Applies new transfers to the transfer index and to the payments of the charges they paid for."""

    def __init__(self, *, index: StripeIndex, indexer: Indexer, payments: PaymentReenricher) -> None:
        self._index = index
        self._indexer = indexer
        self._payments = payments

    async def apply(
        self, transfer: StripeTransferCreated, *, reannounce: bool = False
    ) -> TransferChangeResult:
        """Link the transfer to its charge and enrich the charge's payments again."""
        charge_id, arrived = transfer.source_charge_id, transfer.destination_payment_id
        if charge_id is None or arrived is None:
            return TransferChangeResult(TransferOutcome.UNLINKED)
        await self._indexer.link_transfer(
            transfer_id=transfer.transfer_id,
            charge_id=charge_id,
            destination=transfer.destination_account_id,
            destination_payment=arrived,
        )
        indexed = await self._index.payment(charge_id)
        if indexed is None:
            return TransferChangeResult(TransferOutcome.NOT_ENRICHED_YET)
        payment_ids = sorted(filter(None, {indexed.charge.get("id"), indexed.charge.get("payment_intent")}))
        for payment_id in payment_ids:
            # As of the transfer: a charges listing of the destination that started later has its `py_`.
            await self._payments.enrich(
                str(payment_id),
                requested_at=transfer.transfer_created,
                reannounce=reannounce,
                change=TransactionChange.ENRICHED,
            )
        return TransferChangeResult(TransferOutcome.APPLIED, payments=len(payment_ids))
