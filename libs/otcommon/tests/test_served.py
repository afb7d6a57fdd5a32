"""The served IsRefunded / IsDisputed: the source's flag or Stripe's fact, row by row."""

from __future__ import annotations

import pytest

from otcommon.served import served_is_disputed, served_is_refunded


@pytest.mark.parametrize(
    ("source", "stripe", "served"),
    [
        (False, None, False),
        (True, None, True),
        (False, "none", False),
        (False, "partial", True),
        (False, "full", True),
        (True, "none", True),  # refunded outside Stripe (cash at the box office)
    ],
)
def test_refunded_is_the_source_flag_or_a_stripe_refund(source, stripe, served):
    assert served_is_refunded({"IsRefunded": source, "stripeRefundStatus": stripe}) is served


@pytest.mark.parametrize(
    ("source", "stripe", "served"),
    [
        (False, None, False),
        (True, None, True),
        (False, "needs_response", True),
        (False, "under_review", True),
        (False, "warning_needs_response", True),
        (False, "lost", True),
        (False, "won", False),
        (False, "warning_closed", False),
        (False, "prevented", False),
        (True, "won", True),
    ],
)
def test_disputed_is_the_source_flag_or_an_open_or_lost_dispute(source, stripe, served):
    assert served_is_disputed({"IsDisputed": source, "stripeDisputeStatus": stripe}) is served
