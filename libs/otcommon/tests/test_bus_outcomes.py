import asyncio

import pytest

from otcommon.bus import (
    Backoff,
    PermanentError,
    RetryableError,
    RetryPolicy,
    Settlement,
    apply_outcome,
    decide_outcome,
)
from otcommon.bus.outcomes import ORIGINAL_MESSAGE_ID_PROPERTY, Outcome, retry_copy
from otcommon.messages import ATTEMPT_PROPERTY, DecodeFailure, MessageDecodeError, RawMessage

POLICY = RetryPolicy(max_attempts=3, backoff=Backoff(initial_seconds=2.0, maximum_seconds=60.0, jitter=0.0))


def decide(error, attempt=1):
    return decide_outcome(error=error, attempt=attempt, policy=POLICY)


def test_success_completes():
    assert decide(None) == Outcome(settlement=Settlement.COMPLETE)


def test_decode_error_dead_letters_with_its_reason_and_description():
    outcome = decide(
        MessageDecodeError(reason=DecodeFailure.INVALID_JSON, description="body is not UTF-8 JSON")
    )

    assert outcome == Outcome(
        settlement=Settlement.DEAD_LETTER, reason="InvalidJson", description="body is not UTF-8 JSON"
    )


def test_permanent_error_dead_letters_with_its_reason_and_description():
    outcome = decide(PermanentError("no account owns it", reason="PaymentNotFound"))

    assert outcome == Outcome(
        settlement=Settlement.DEAD_LETTER, reason="PaymentNotFound", description="no account owns it"
    )


def test_retryable_error_reschedules_with_exponential_backoff():
    assert decide(RetryableError("busy"), attempt=1).delay_seconds == 2.0
    assert decide(RetryableError("busy"), attempt=2).settlement is Settlement.RESCHEDULE
    assert decide(RetryableError("busy"), attempt=2).delay_seconds == 4.0


def test_retry_after_from_the_dependency_wins_over_backoff():
    assert decide(RetryableError("429", retry_after_seconds=30.0)).delay_seconds == 30.0


def test_retryable_error_dead_letters_on_the_last_attempt():
    outcome = decide(RetryableError("stripe down"), attempt=3)

    assert outcome.settlement is Settlement.DEAD_LETTER
    assert outcome.reason == "RetriesExhausted"
    assert outcome.description == "gave up after 3 attempts: stripe down"


def test_unexpected_error_abandons_and_records_only_its_type():
    outcome = decide(KeyError("jane.doe@example.com"))

    assert outcome == Outcome(settlement=Settlement.ABANDON, reason="UnexpectedError", description="KeyError")


def test_cancellation_at_shutdown_abandons():
    assert decide(asyncio.CancelledError()).settlement is Settlement.ABANDON


def raw(**properties):
    return RawMessage(
        body=b"{}",
        subject="T",
        message_id="original",
        correlation_id="run-1",
        properties={"schemaVersion": 1, **properties},
    )


def test_retry_copy_carries_the_next_attempt_under_a_new_deterministic_id():
    first = retry_copy(raw())
    second = retry_copy(first)

    assert (first.properties[ATTEMPT_PROPERTY], second.properties[ATTEMPT_PROPERTY]) == (2, 3)
    assert first.properties[ORIGINAL_MESSAGE_ID_PROPERTY] == "original"
    assert second.properties[ORIGINAL_MESSAGE_ID_PROPERTY] == "original"
    # A new id, or duplicate detection would drop the copy; the same id for the same attempt, so a
    # copy scheduled twice (the original's complete failed and it came back) is dropped once.
    assert len({"original", first.message_id, second.message_id}) == 3
    assert retry_copy(raw()).message_id == first.message_id
    assert (first.body, first.subject, first.correlation_id) == (b"{}", "T", "run-1")


class RecordingReceived:
    def __init__(self):
        self.raw = raw()
        self.delivery_count = 1
        self.calls = []

    async def complete(self):
        self.calls.append(("complete",))

    async def abandon(self):
        self.calls.append(("abandon",))

    async def dead_letter(self, *, reason, description):
        self.calls.append(("dead_letter", reason, description))

    async def reschedule(self, *, copy, delay_seconds):
        self.calls.append(("reschedule", copy.properties[ATTEMPT_PROPERTY], delay_seconds))


@pytest.mark.parametrize(
    ("outcome", "call"),
    [
        (Outcome(settlement=Settlement.COMPLETE), ("complete",)),
        (Outcome(settlement=Settlement.ABANDON), ("abandon",)),
        (Outcome(settlement=Settlement.DEAD_LETTER, reason="R", description="D"), ("dead_letter", "R", "D")),
        (Outcome(settlement=Settlement.RESCHEDULE, delay_seconds=5.0), ("reschedule", 2, 5.0)),
    ],
    ids=["complete", "abandon", "dead-letter", "reschedule"],
)
async def test_each_outcome_settles_the_message_once(outcome, call):
    received = RecordingReceived()

    await apply_outcome(received, outcome)

    assert received.calls == [call]


async def test_dead_letter_details_are_kept_within_broker_limits():
    received = RecordingReceived()

    await apply_outcome(
        received, Outcome(settlement=Settlement.DEAD_LETTER, reason="R" * 500, description="D" * 5000)
    )

    [(_, reason, description)] = received.calls
    assert len(reason) <= 128
    assert len(description) <= 1024
