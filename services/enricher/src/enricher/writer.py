"""Writing a payment's enrichment onto every transaction that carries its PaymentID.

Each document is rewritten under its ETag (``read_modify_write``), changing only enricher-owned fields;
a write that would change nothing is skipped, so a redelivered message writes nothing twice. The
state moves only along ``otcommon.enrichment``'s transitions (or stays where it is), a transaction is
written only while it still carries the PaymentID being enriched, and the deposit fields of a payout
never move back to an older state of that payout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from enricher.deposits import payout_status_is_behind
from enricher.findings import (
    CHARGE_ID_FIELD,
    COMPARED_FIELDS,
    DEPOSIT_FIELDS,
    ENRICHED_AT_FIELD,
    ENRICHER_FIELDS,
    PAYMENT_INTENT_ID_FIELD,
    PAYOUT_ID_FIELD,
    PAYOUT_STATUS_FIELD,
)
from enricher.lookup import PaymentTransactions
from otcommon.enrichment import STATE_FIELD, can_transition
from otcommon.payment_transactions import ref_of
from otcommon.store import CoalescingContainer, read_modify_write

if TYPE_CHECKING:
    from collections.abc import Mapping

    from enricher.payment_transactions import PaymentTransactionsIndex
    from otcommon.store import Document, DocumentContainer

_log = structlog.get_logger(__name__)

LINGER_SECONDS = 0.02
"""How long the transactions' lookups and replaces wait to go together: payments of a backlog then
share queries and batches; a lone payment's write waits this long.
``OT_ENRICHER_COALESCE_LINGER_SECONDS`` sets it for ``serve``."""


@dataclass(frozen=True, slots=True)
class WrittenTransaction:
    """A transaction of the payment, and what this write changed on it (nothing: already written)."""

    transaction_id: str
    event_id: str
    changed_fields: tuple[str, ...]
    enriched_at: str | None
    """The stored ``enrichedAt``: a retried announcement of the same write carries the same stamp."""

    @property
    def changed(self) -> bool:
        """Whether this write changed the document."""
        return bool(self.changed_fields)


class PaymentWriter(Protocol):
    """Writes a payment's enrichment: ``EnrichmentWriter`` here, or ``WriteProcess`` in a child."""

    async def apply(self, *, payment_id: str, fields: Mapping[str, Any]) -> list[WrittenTransaction]:
        """Write ``fields`` on each transaction of the payment; every transaction, changed or not."""
        ...


class EnrichmentWriter:
    """Applies enrichment fields to the ``transactions`` container."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        payment_index: PaymentTransactionsIndex | None = None,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        # Payments resolved together (a listed page, one lookup's answers) write together: their
        # replaces go as one transactional batch per event, each still under its own ETag. Each
        # round lingers a little, so that a backlog's payments write in fewer, larger batches.
        self._container = CoalescingContainer(container, linger_seconds=linger_seconds)
        self._payment_index = payment_index
        self._lookup = PaymentTransactions(container, linger_seconds=linger_seconds)

    async def transactions_of(self, payment_id: str) -> list[Document]:
        """Every stored transaction with this PaymentID (one query shared with concurrent lookups)."""
        return await self._lookup.of(payment_id)

    async def apply(self, *, payment_id: str, fields: Mapping[str, Any]) -> list[WrittenTransaction]:
        """Write ``fields`` on each transaction of the payment; every transaction, changed or not."""
        if unknown := set(fields) - ENRICHER_FIELDS:
            raise ValueError(f"the enricher does not own {sorted(unknown)}")
        found = await self.transactions_of(payment_id)
        if self._payment_index is not None:
            # Listed before the ids are written: a transaction carrying them is always listed under them.
            ids = (payment_id, fields.get(CHARGE_ID_FIELD), fields.get(PAYMENT_INTENT_ID_FIELD))
            await self._payment_index.add(ids, [ref_of(document) for document in found])
        # At once, so that a payment's transactions of one event go in the same batch.
        written = await asyncio.gather(
            *(self._write(document, payment_id=payment_id, fields=fields) for document in found)
        )
        return [each for each in written if each is not None]

    async def _write(
        self, document: Document, *, payment_id: str, fields: Mapping[str, Any]
    ) -> WrittenTransaction | None:
        """Write ``fields`` on one transaction found by the lookup; None when it left the payment."""
        changed: list[str] = []

        def mutate(current: Document) -> Document | None:
            newest = _keeping_newer_payout_state(current, fields)
            changed.clear()
            changed.extend(_changes(current, payment_id=payment_id, fields=newest))
            if not changed:
                return None
            # A replace, not a patch: Cosmos DB takes at most 10 patch operations per request, and
            # the enricher's fields are about twenty. The ETag still guards it; other writers'
            # fields are carried over as read.
            kept = {name: value for name, value in current.items() if not name.startswith("_")}
            return {**kept, **newest}

        # The query's copy (with its ETag) is decided on first: no second read unless it went stale.
        outcome = await read_modify_write(
            self._container,
            document["id"],
            partition_key=document["eventId"],
            mutate=mutate,
            current=document,
        )
        if outcome.document.get("PaymentID") != payment_id:
            return None
        return WrittenTransaction(
            transaction_id=document["id"],
            event_id=document["eventId"],
            changed_fields=tuple(sorted(changed)) if outcome.result == "updated" else (),
            enriched_at=outcome.document.get(ENRICHED_AT_FIELD),
        )


def _keeping_newer_payout_state(current: Document, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """``fields``, but with the stored deposit fields when they show the same payout further along.

    An enrichment that read the payout before it moved may finish after the payout change was
    written: its older payout state must not replace the newer one.
    """
    payout_id = current.get(PAYOUT_ID_FIELD)
    if payout_id is None or fields.get(PAYOUT_ID_FIELD) != payout_id:
        return fields
    if not payout_status_is_behind(fields.get(PAYOUT_STATUS_FIELD), than=current.get(PAYOUT_STATUS_FIELD)):
        return fields
    _log.info("older payout state not written", payout_id=payout_id, stored=current.get(PAYOUT_STATUS_FIELD))
    return {**fields, **{name: current.get(name) for name in DEPOSIT_FIELDS}}


def _changes(current: Document, *, payment_id: str, fields: Mapping[str, Any]) -> list[str]:
    """The fields this write would change, or none when it must not be written at all."""
    if current.get("PaymentID") != payment_id:
        return []  # the order moved to another payment since the query: its facts are not these
    state, target = current.get(STATE_FIELD), fields.get(STATE_FIELD)
    if target is not None and state != target and not can_transition(state, target):
        _log.warning(
            "enrichment not written", reason="state transition not allowed", state=state, target=target
        )
        return []
    return [name for name in fields if name in COMPARED_FIELDS and current.get(name) != fields[name]]
