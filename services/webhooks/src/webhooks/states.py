"""The life of a recorded Stripe event, and the moves between its states.

A verified delivery is recorded ``received`` before Stripe is answered; the applier ends it
``applied`` (its change is in Cosmos and announced), ``ignored`` (a type or object this service
does not act on, with a reason) or ``failed`` (with a reason, after the applier gave up). An operator's
replay puts a failed or ignored event back to ``received``. Nothing moves out of ``applied``:
re-applying an applied event could only repeat what is already stored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

STATE_FIELD = "state"
"""The event record's field holding its state."""

REASON_FIELD = "reason"
"""The event record's field saying why it was ignored or failed."""


class EventState(StrEnum):
    """Where a recorded event is on its way to being applied."""

    RECEIVED = "received"
    APPLIED = "applied"
    IGNORED = "ignored"
    FAILED = "failed"


class SettleReason(StrEnum):
    """Why an event ended ``ignored`` or ``failed``; stable strings an operator can query for."""

    UNKNOWN_TYPE = "unknown-event-type"
    NO_PAYMENT_REFERENCE = "no-charge-or-payment-intent"
    GAVE_UP = "gave-up-after-retries"
    WAITED_TOO_LONG = "waited-too-long"


_NEXT_STATES: Mapping[EventState, frozenset[EventState]] = {
    EventState.RECEIVED: frozenset({EventState.APPLIED, EventState.IGNORED, EventState.FAILED}),
    # Replay: the cause was fixed (the transaction arrived, the bug was fixed).
    EventState.IGNORED: frozenset({EventState.RECEIVED}),
    EventState.FAILED: frozenset({EventState.RECEIVED}),
    EventState.APPLIED: frozenset(),
}

SETTLED_STATES = frozenset({EventState.APPLIED, EventState.IGNORED, EventState.FAILED})


class InvalidTransitionError(Exception):
    """A move the table does not allow (a bug, or a race another writer won)."""


def can_transition(current: str, new: EventState | str) -> bool:
    """Whether an event in ``current`` may move to ``new``; an unknown ``current`` moves nowhere."""
    target = EventState(new)
    if current not in _NEXT_STATES:
        return False
    return target in _NEXT_STATES[EventState(current)]


def check_transition(current: str, new: EventState) -> None:
    """InvalidTransitionError unless ``current`` may move to ``new``."""
    if not can_transition(current, new):
        raise InvalidTransitionError(f"an event {current!r} cannot become {new.value!r}")
