"""The enrichment state of a payment, and the moves between states every writer must respect.

A transaction with a PaymentID is stored ``pending``; ingest publishes an enrichment request and
marks it ``queued``; the enricher ends it ``enriched`` or ``unresolved`` (with a reason). A
requeue, or a new PaymentID behind the order, puts any state back to ``pending``. A transaction
without a PaymentID (box-office cash) has no enrichment state at all (``None`` in the document).

Adding a state is a member of :class:`EnrichmentState` and its row in ``_NEXT_STATES`` (plus the
rows that lead to it); every writer and the CLI read both from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

STATE_FIELD = "enrichmentState"
"""The document field that holds the state."""

REASON_FIELD = "enrichmentReason"
"""The document field that says why a payment is ``unresolved``."""


class EnrichmentState(StrEnum):
    """Where a payment is on its way to its Stripe facts."""

    PENDING = "pending"
    QUEUED = "queued"
    ENRICHED = "enriched"
    UNRESOLVED = "unresolved"


class EnrichmentReason(StrEnum):
    """Why a payment enters ``pending`` and is (re)queued for enrichment."""

    NEW = "new"
    REQUEUE = "requeue"


INITIAL_STATE = EnrichmentState.PENDING
"""The state of a newly stored payment."""

_NEXT_STATES: Mapping[EnrichmentState, frozenset[EnrichmentState]] = {
    # A requeue re-stamps a pending payment; the enricher may finish before ingest marks it queued;
    # a payment no message can describe is unresolved at once.
    EnrichmentState.PENDING: frozenset(EnrichmentState),
    EnrichmentState.QUEUED: frozenset(
        {EnrichmentState.PENDING, EnrichmentState.ENRICHED, EnrichmentState.UNRESOLVED}
    ),
    EnrichmentState.ENRICHED: frozenset({EnrichmentState.PENDING}),
    EnrichmentState.UNRESOLVED: frozenset({EnrichmentState.PENDING}),
}


def can_transition(current: str | None, new: EnrichmentState | str) -> bool:
    """Whether a payment in ``current`` may move to ``new``.

    A document with no state (no PaymentID) or a state this code does not know moves nowhere by a
    transition; only a reset (a new PaymentID) gives it one. ``new`` must be a known state.
    """
    target = EnrichmentState(new)
    if current is None or current not in _NEXT_STATES:
        return False
    return target in _NEXT_STATES[EnrichmentState(current)]


def next_states(current: EnrichmentState | str) -> frozenset[EnrichmentState]:
    """Every state a payment in ``current`` may move to."""
    return _NEXT_STATES[EnrichmentState(current)]
