"""The ``transactions-of:`` index documents: their form, and entries only ever added."""

from __future__ import annotations

from otcommon.payment_transactions import (
    TransactionRef,
    listed_transactions,
    payment_transactions_document,
    payment_transactions_key,
    ref_of,
    with_transactions,
)

A, B = TransactionRef("ev1", "t1"), TransactionRef("ev2", "t2")


def test_a_document_names_its_transactions_by_partition_and_id():
    document = payment_transactions_document("pi_1", [B, A, A])
    assert document["id"] == payment_transactions_key("pi_1") == "transactions-of:pi_1"
    assert document["transactions"] == [{"eventId": "ev1", "id": "t1"}, {"eventId": "ev2", "id": "t2"}]
    assert listed_transactions(document) == [A, B]
    assert ref_of({"id": "t1", "eventId": "ev1", "PaymentID": "pi_1"}) == A


def test_adding_keeps_what_is_listed_and_adding_nothing_new_writes_nothing():
    stored = {**payment_transactions_document("pi_1", [A]), "_etag": "x"}
    added = with_transactions(stored, [B])
    assert added is not None
    assert listed_transactions(added) == [A, B]
    assert "_etag" not in added
    assert with_transactions(added, [A, B]) is None


def test_malformed_entries_are_not_listed():
    document = {
        "id": "transactions-of:pi_1",
        "transactions": [{"id": "t1"}, "t2", {"eventId": "ev3", "id": "t3"}],
    }
    assert listed_transactions(document) == [TransactionRef("ev3", "t3")]
    assert listed_transactions({"id": "transactions-of:pi_1", "transactions": None}) == []
