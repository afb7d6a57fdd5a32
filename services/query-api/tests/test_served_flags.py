"""The IsRefunded / IsDisputed the query API serves: the source flag or the current Stripe fact."""

from __future__ import annotations

import itertools

from query_documents import transaction

from otcommon.served import served_is_disputed, served_is_refunded
from query_api.analytics import analyze
from query_api.filters import TransactionFilter
from query_api.readmodel import ReadModel, served
from query_api.scope import EventScope

EVERYTHING = EventScope.everything()
SOURCE_FLAGS = (False, True)
REFUND_STATUSES = (None, "partial", "full", "none")
DISPUTE_STATUSES = (None, "needs_response", "lost", "won", "warning_closed")
STAMPS = (None, "pi_current", "pi_previous")


def combinations() -> list[dict[str, object]]:
    documents = []
    for number, (flag, refund, dispute, stamp) in enumerate(
        itertools.product(SOURCE_FLAGS, REFUND_STATUSES, DISPUTE_STATUSES, STAMPS), start=1
    ):
        facts = {"stripeRefundStatus": refund, "stripeDisputeStatus": dispute, "stripeFactsPaymentId": stamp}
        source = transaction(number, PaymentID="pi_current", IsRefunded=flag, IsDisputed=flag)
        documents.append({**source, **facts})
    return documents


def test_every_combination_of_source_flag_and_stripe_fact_is_served_as_otcommon_served_says():
    model = ReadModel()
    documents = combinations()
    assert model.upsert(documents).applied == len(documents)
    rows = {row["id"]: row for row in served(model.rows(EVERYTHING))}
    for document in documents:
        row = rows[str(document["id"])]
        assert row["IsRefunded"] is served_is_refunded(document), document
        assert row["IsDisputed"] is served_is_disputed(document), document


def test_a_refund_known_only_to_stripe_counts_in_the_metrics_and_the_refunded_filter():
    model = ReadModel()
    model.upsert(
        [
            {
                **transaction(1, PaymentID="pi_1"),
                "stripeRefundStatus": "full",
                "stripeFactsPaymentId": "pi_1",
            },
            # The order moved to another payment: the old payment's refund no longer counts.
            {
                **transaction(2, PaymentID="pi_2"),
                "stripeRefundStatus": "full",
                "stripeFactsPaymentId": "pi_old",
            },
            transaction(3, PaymentID="pi_3"),
        ]
    )
    refunded = model.rows(EVERYTHING, TransactionFilter(refunded=True))
    assert refunded["id"].to_list() == ["tx1"]
    report = analyze(model, EVERYTHING, TransactionFilter())
    assert report.refund_count == 1
