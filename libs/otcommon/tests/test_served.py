"""The served IsRefunded / IsDisputed: the source's flag or Stripe's fact, row by row."""

from __future__ import annotations

import pytest

from otcommon.served import STRIPE_FACTS_PAYMENT_FIELD, served_is_disputed, served_is_refunded

PAID_BY = {"PaymentID": "pi_current", STRIPE_FACTS_PAYMENT_FIELD: "pi_current"}
"""Stripe facts written for the order's current payment."""


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
    assert served_is_refunded({**PAID_BY, "IsRefunded": source, "stripeRefundStatus": stripe}) is served


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
    assert served_is_disputed({**PAID_BY, "IsDisputed": source, "stripeDisputeStatus": stripe}) is served


@pytest.mark.parametrize(
    "facts_for",
    [{STRIPE_FACTS_PAYMENT_FIELD: "pi_old"}, {}],
    ids=["another-payment", "unstamped"],
)
def test_stripe_facts_about_another_payment_do_not_count(facts_for):
    # The source re-pointed the order to pi_current: pi_old's refund and dispute are not this order's.
    document = {
        "PaymentID": "pi_current",
        "IsRefunded": False,
        "IsDisputed": False,
        "stripeRefundStatus": "full",
        "stripeDisputeStatus": "lost",
        **facts_for,
    }
    assert served_is_refunded(document) is False
    assert served_is_disputed(document) is False


def test_the_source_flag_counts_whatever_payment_the_facts_describe():
    document = {"PaymentID": "pi_current", STRIPE_FACTS_PAYMENT_FIELD: "pi_old", "IsRefunded": True}
    assert served_is_refunded({**document, "stripeRefundStatus": "none"}) is True
