"""The event state machine: every pair of states is either an allowed move or a refused one."""

from __future__ import annotations

import itertools

import pytest

from webhooks.states import EventState, InvalidTransitionError, can_transition, check_transition

RECEIVED, APPLIED, IGNORED, FAILED = (
    EventState.RECEIVED,
    EventState.APPLIED,
    EventState.IGNORED,
    EventState.FAILED,
)

ALLOWED = {
    (RECEIVED, APPLIED),
    (RECEIVED, IGNORED),  # a type or object this service does not act on
    (RECEIVED, FAILED),  # the applier gave up
    (IGNORED, RECEIVED),  # replay by an operator
    (FAILED, RECEIVED),  # replay by an operator
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(EventState, repeat=2)))
def test_every_move_is_allowed_or_refused_as_declared(current: EventState, new: EventState):
    assert can_transition(current, new) is ((current, new) in ALLOWED)
    if (current, new) in ALLOWED:
        check_transition(current, new)
    else:
        with pytest.raises(InvalidTransitionError):
            check_transition(current, new)


def test_a_record_with_an_unknown_state_moves_nowhere():
    assert not any(can_transition("paused", new) for new in EventState)


def test_an_unknown_target_state_is_an_error():
    with pytest.raises(ValueError, match="retrying"):
        can_transition("received", "retrying")
