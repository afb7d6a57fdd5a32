"""The ``transactions-of:<ch_|pi_>`` index documents: which transactions carry a payment.

The writer names a payment's transactions here before it writes the payment's charge and
PaymentIntent ids onto them, so a transaction carrying those ids is always listed under them (the
webhook service finds the orders of a refund or dispute by point reads; ``otcommon.payment_transactions``
says how it checks what it reads). Entries are only added, under the ETag: two replicas enriching the
same payment at once each add what they found, and neither removes the other's.

The documents of payments enriched at about the same time are created together: one transactional
batch per ``stripe-facts`` partition (``CoalescingContainer`` with ``batch_creates``, lingering
like the writer's replaces). A create whose document exists (another replica, or this one before
a restart) fails alone and is added to under its ETag.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from enricher.indexes import all_of
from otcommon.payment_transactions import (
    listed_transactions,
    payment_transactions_document,
    payment_transactions_key,
    payment_transactions_partition,
    with_transactions,
)
from otcommon.store import CoalescingContainer, DocumentExistsError, read_modify_write

if TYPE_CHECKING:
    from collections.abc import Iterable

    from otcommon.payment_transactions import TransactionRef
    from otcommon.store import Document, DocumentContainer

REMEMBERED_KEYS = 50_000
"""Keys whose listed transactions this replica remembers (least recently used go first)."""


class PaymentTransactionsIndex:
    """Adds transactions to the documents of a payment's ids; skips what this replica knows is listed."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        remembered_keys: int = REMEMBERED_KEYS,
        linger_seconds: float = 0.0,
    ) -> None:
        self._container = CoalescingContainer(container, batch_creates=True, linger_seconds=linger_seconds)
        # Entries are never removed, so what was listed once stays listed: a re-enrichment of the same
        # payment (a payout moved) costs no read.
        self._listed: OrderedDict[str, frozenset[TransactionRef]] = OrderedDict()
        self._remembered_keys = remembered_keys

    async def add(self, stripe_ids: Iterable[str | None], refs: Iterable[TransactionRef]) -> None:
        """List ``refs`` under each of the payment's ids (its PaymentID, charge and PaymentIntent)."""
        wanted = frozenset(refs)
        if not wanted:
            return
        await all_of(
            self._add_one(stripe_id, wanted) for stripe_id in sorted({each for each in stripe_ids if each})
        )

    async def _add_one(self, stripe_id: str, wanted: frozenset[TransactionRef]) -> None:
        key = payment_transactions_key(stripe_id)
        if wanted <= self._listed.get(key, frozenset()):
            self._listed.move_to_end(key)
            return
        if key not in self._listed:
            # Most payments are new: one create, not a read that finds nothing and then a create.
            try:
                self._remember(
                    key, await self._container.create(payment_transactions_document(stripe_id, wanted))
                )
            except DocumentExistsError:
                pass  # listed before (another replica, or this one before a restart): add to it
            else:
                return
        outcome = await read_modify_write(
            self._container,
            key,
            partition_key=payment_transactions_partition(key),
            mutate=lambda current: with_transactions(current, wanted),
            create=lambda: payment_transactions_document(stripe_id, wanted),
        )
        self._remember(key, outcome.document)

    def _remember(self, key: str, document: Document) -> None:
        self._listed[key] = frozenset(listed_transactions(document))
        self._listed.move_to_end(key)
        while len(self._listed) > self._remembered_keys:
            self._listed.popitem(last=False)
