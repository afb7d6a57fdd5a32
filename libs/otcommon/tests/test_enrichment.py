"""The enrichment state machine: every pair of states is either an allowed move or a refused one."""

from __future__ import annotations

import itertools

import pytest

from otcommon.enrichment import INITIAL_STATE, EnrichmentState, can_transition, next_states

PENDING, QUEUED, ENRICHED, UNRESOLVED = (
    EnrichmentState.PENDING,
    EnrichmentState.QUEUED,
    EnrichmentState.ENRICHED,
    EnrichmentState.UNRESOLVED,
)

ALLOWED = {
    (PENDING, PENDING),  # a requeue re-stamps a payment still waiting
    (PENDING, QUEUED),  # ingest published the request
    (PENDING, ENRICHED),  # the enricher finished before ingest marked it queued
    (PENDING, UNRESOLVED),  # no message can describe it, or the enricher found nothing
    (QUEUED, PENDING),  # requeue, or another PaymentID now backs the order
    (QUEUED, ENRICHED),
    (QUEUED, UNRESOLVED),
    (ENRICHED, PENDING),  # requeue, or another PaymentID
    (UNRESOLVED, PENDING),  # requeue after the cause was fixed
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(EnrichmentState, repeat=2)))
def test_every_move_is_allowed_or_refused_as_declared(current: EnrichmentState, new: EnrichmentState):
    assert can_transition(current, new) is ((current, new) in ALLOWED)
    assert (new in next_states(current)) is ((current, new) in ALLOWED)


def test_states_read_from_documents_as_strings_follow_the_same_table():
    assert can_transition("pending", "queued")
    assert not can_transition("enriched", "queued")


@pytest.mark.parametrize("current", [None, "paused"])
def test_a_document_without_a_known_state_moves_nowhere(current: str | None):
    assert not any(can_transition(current, new) for new in EnrichmentState)


def test_an_unknown_target_state_is_an_error():
    with pytest.raises(ValueError, match="retrying"):
        can_transition("pending", "retrying")


def test_a_new_payment_starts_pending():
    assert INITIAL_STATE is PENDING
