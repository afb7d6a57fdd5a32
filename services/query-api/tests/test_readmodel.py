"""The read model holds the newest copy of each document, refuses what it cannot count, scopes reads."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from query_documents import T0, transaction

from otcommon.normalize import stable_id
from query_api.columns import DEFAULTS, DOCUMENT_SCHEMA, SERVED_FIELDS
from query_api.filters import TransactionFilter
from query_api.heldids import ABSENT, HeldIds, IdKeys
from query_api.readmodel import ReadModel
from query_api.scope import EventScope

EVERYTHING = EventScope.everything()


def amounts(model: ReadModel) -> dict[str, float]:
    rows = model.rows(EVERYTHING)
    return dict(zip(rows["id"].to_list(), rows["TotalAmount"].to_list(), strict=True))


def test_upsert_replaces_by_id_and_keeps_other_rows(model):
    model.upsert([transaction(1), transaction(2)])
    report = model.upsert([transaction(1, ts=2, TotalAmount=25.5)])
    assert report.applied == 1
    assert amounts(model) == {"tx1": 25.5, "tx2": 10.0}


def test_an_older_copy_is_ignored(model):
    model.upsert([transaction(1, ts=5, TotalAmount=50)])
    report = model.upsert([transaction(1, ts=4, TotalAmount=40)])
    assert (report.applied, report.stale) == (0, 1)
    assert amounts(model) == {"tx1": 50.0}


def test_same_ts_applies_only_a_different_etag(model):
    model.upsert([transaction(1, ts=5, etag="a", TotalAmount=50)])
    assert model.upsert([transaction(1, ts=5, etag="a", TotalAmount=1)]).stale == 1
    assert model.upsert([transaction(1, ts=5, etag="b", TotalAmount=51)]).applied == 1
    assert amounts(model) == {"tx1": 51.0}


def test_within_a_batch_the_newest_copy_wins(model):
    report = model.upsert(
        [transaction(1, ts=3, TotalAmount=30), transaction(1, ts=2, TotalAmount=20), transaction(2)]
    )
    assert report.applied == 2
    assert amounts(model) == {"tx1": 30.0, "tx2": 10.0}


def test_documents_that_cannot_be_counted_are_refused_with_the_field(model):
    bad_type = {**transaction(1), "TotalAmount": "12"}
    bad_date = {**transaction(2), "PurchaseDate": "yesterday"}
    missing = {key: value for key, value in transaction(3).items() if key != "TotalTickets"}
    # Values a lenient loader would quietly turn into False or 2 are refused, not coerced.
    flag_as_text = {**transaction(5), "IsRefunded": "12"}
    fractional_count = {**transaction(6), "TotalTickets": 2.5}
    report = model.upsert([bad_type, bad_date, missing, transaction(4), flag_as_text, fractional_count])
    assert report.applied == 1
    assert {(r.document_id, r.reason.split(":")[0]) for r in report.rejected} == {
        ("tx1", "TotalAmount"),
        ("tx2", "PurchaseDate"),
        ("tx3", "TotalTickets"),
        ("tx5", "IsRefunded"),
        ("tx6", "TotalTickets"),
    }
    assert list(amounts(model)) == ["tx4"]


def test_delete_removes_and_a_late_older_copy_stays_deleted(model):
    model.upsert([transaction(1, ts=5), transaction(2, ts=5)])
    assert model.delete("tx1", ts=6)
    assert model.upsert([transaction(1, ts=5, etag="late")]).stale == 1
    assert list(amounts(model)) == ["tx2"]
    assert model.upsert([transaction(1, ts=7)]).applied == 1
    assert sorted(amounts(model)) == ["tx1", "tx2"]


def test_a_delete_older_than_the_held_copy_is_ignored(model):
    model.upsert([transaction(1, ts=9)])
    assert not model.delete("tx1", ts=8)
    assert list(amounts(model)) == ["tx1"]


def test_scope_applies_beneath_filters_and_detail_reads(model):
    model.upsert([transaction(1, event="a"), transaction(2, event="b"), transaction(3, event="c")])
    scope = EventScope.only({"a", "b"})
    asked_for_c = TransactionFilter.of(event_ids=["c", "b"])
    assert model.rows(scope, asked_for_c)["id"].to_list() == ["tx2"]
    assert model.get(scope, "tx3") is None
    assert model.get(EventScope.only(set()), "tx1") is None
    detail = model.get(scope, "tx1")
    assert detail is not None
    assert detail["eventId"] == "a"
    assert "_purchasedAt" not in detail
    assert "customerId" in detail


def test_date_range_is_inclusive_exclusive_and_redemption_mode_needs_a_redemption(model):
    model.upsert(
        [
            transaction(1, PurchaseDate=T0, TicketRedemptionDateTime=T0 + timedelta(days=2)),
            transaction(2, PurchaseDate=T0 + timedelta(hours=1)),
        ]
    )
    purchase = TransactionFilter.of(date_from=T0, date_to=T0 + timedelta(hours=1))
    assert model.rows(EVERYTHING, purchase)["id"].to_list() == ["tx1"]
    redeemed = TransactionFilter.of(date_from=T0 + timedelta(days=1), date_mode="redemption")
    assert model.rows(EVERYTHING, redeemed)["id"].to_list() == ["tx1"]


def test_filters_match_normalized_values(model):
    model.upsert(
        [
            transaction(1, TicketTypes="VIP, General", PurchaseFrom="Box Office", ReferralCode=" Summer "),
            transaction(2, TicketTypes="Student", Name="Ana Lima", PaymentID="pi_ABC123"),
        ]
    )

    def ids(**filters) -> list[str]:
        return sorted(model.rows(EVERYTHING, TransactionFilter.of(**filters))["id"].to_list())

    assert ids(ticket_types=[" vip "]) == ["tx1"]
    assert ids(ticket_types=["student", "general"]) == ["tx1", "tx2"]
    assert ids(sources=["BOXOFFICE"]) == ["tx1"]
    assert ids(sources=["online"]) == ["tx2"]
    assert ids(referral_codes=["SUMMER"]) == ["tx1"]
    assert ids(search="ana LIMA") == ["tx2"]
    assert ids(search="abc12") == ["tx2"]
    assert ids(valid=True, refunded=False) == ["tx1", "tx2"]
    assert ids(refunded=True) == []
    assert model.rows(EVERYTHING, TransactionFilter.of(search="zz")).schema == model.rows(EVERYTHING).schema
    assert isinstance(model.rows(EVERYTHING), pl.DataFrame)


FILLED: dict[str, Any] = {
    # Every field the API serves, text with quotes, escapes and other scripts among them.
    "SN": 2**40,
    "Phone": "+44 20 7946 0000",
    "RefundedRemarks": 'said "no" \\ twice',
    "ReferralCode": "Summer",
    "ReferralCodeDiscount": 12.5,
    "ReferralCodeDiscountType": "%",
    "PaymentMethod": "card",
    "PaymentID": "pi_1",
    "TotalScanCount": 2,
    "TotalTicketRedeemed": 1,
    "TicketWasLastScannedTime": T0 + timedelta(days=3),
    "TicketRedemptionDateTime": T0 + timedelta(days=3),
    "PlatformFee": 0.1,
    "PaymentProviderFee": 0.2,
    "TaxFee": 0.3,
    "OrganizerAmount": 9.4,
    "enrichmentState": "enriched",
    "enrichmentReason": "found on a connected account",
    "sourceUpdatedAt": T0 + timedelta(hours=1),
    "enrichedAt": T0 + timedelta(hours=2),
    "stripeRouteType": "connected",
    "stripePlatformAccountId": "acct_platform",
    "stripePlatformAccountName": "Plateforme été",
    "stripeDestinationAccountId": "acct_1",
    "stripeDestinationAccountName": "Org 中",
    "stripeChargeId": "ch_1",
    "stripePaymentIntentId": "pi_1",
    "stripeBalanceTransactionId": "txn_1",
    "stripeTransferId": "tr_1",
    "stripeApplicationFeeAmount": 0.3,
    "stripeNetAmount": 9,
    "stripeCurrency": "eur",
    "stripeAvailableOn": "2026-05-03",
    "stripePayoutId": "po_1",
    "stripePayoutStatus": "paid",
    "depositStatus": "paid",
    "depositDate": "2026-05-04",
    "depositBankName": "Bank\nof 😀",
    "depositBankLast4": "0042",
}
STRIPE_FACTS: dict[str, Any] = {
    "stripeRefundStatus": "partial",
    "stripeRefundStateAt": "2026-05-05T00:00:00.000Z",
    "stripeRefundedAmount": 2,
    "stripeDisputeStatus": "won",
    "stripeDisputeReason": "fraudulent",
    "stripeDisputeStateAt": "2026-05-06T00:00:00.000Z",
    "stripeFactsPaymentId": "pi_1",
}


def as_served(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the API serves it: its fields in schema order, numbers of number fields as
    floats, blanks filled with the defaults every metric reads, and the buyer's opaque id."""
    row: dict[str, Any] = {}
    for name in SERVED_FIELDS:
        value = document.get(name, DEFAULTS.get(name))
        if value is not None and isinstance(DOCUMENT_SCHEMA[name], pl.Float64):
            value = float(value)
        row[name] = value
    row["customerId"] = stable_id(document["customerKey"])
    return row


def test_a_transaction_is_served_exactly_as_stored(model):
    filled = {**transaction(1, **FILLED), **STRIPE_FACTS, "IsRefunded": True}  # refunded: as served too
    sparse = {key: value for key, value in transaction(2).items() if key not in ("SN", "source")}
    model.upsert([filled, sparse])

    for document in (filled, sparse):
        served = model.get(EVERYTHING, document["id"])
        assert served is not None
        # Byte for byte as the API writes it: names, order, values and their types.
        assert json.dumps(served) == json.dumps(as_served(document))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stripeNetAmount", float("nan")),
        ("TotalAmount", float("inf")),
        ("ReferralCodeDiscount", 10**400),  # a whole number no float holds
    ],
)
def test_numbers_that_json_cannot_hold_are_refused(model, field, value):
    # Each alone in its batch beside a good document, so the batch's column check must catch it.
    report = model.upsert([{**transaction(1), field: value}, transaction(2, stripeNetAmount=3)])
    assert [(r.document_id, r.reason) for r in report.rejected] == [("tx1", f"{field}: expected a number")]
    assert model.get(EVERYTHING, "tx2")["stripeNetAmount"] == 3.0


def test_an_amount_stored_as_text_is_refused_even_alone_in_its_batch(model):
    report = model.upsert([transaction(1), {**transaction(2), "TotalAmount": "12"}])
    assert [(r.document_id, r.reason) for r in report.rejected] == [("tx2", "TotalAmount: expected a number")]
    assert list(amounts(model)) == ["tx1"]


def test_rows_changed_and_deleted_across_sealed_chunks_keep_only_the_newest_copies():
    # Chunks of 4 rows: changes and deletes land in sealed chunks, the recent rows and emptied chunks.
    model = ReadModel(chunk_rows=4)
    expected: dict[str, float] = {}
    for n in range(30):
        model.upsert([transaction(n, ts=1, TotalAmount=float(n))])
        expected[f"tx{n}"] = float(n)
    assert model.frame().n_chunks() > 1
    model.upsert([transaction(n, ts=2, TotalAmount=100.0 + n) for n in range(0, 30, 3)])
    expected.update({f"tx{n}": 100.0 + n for n in range(0, 30, 3)})
    for n in (1, 2, 4, 5, 7, 8):
        assert model.delete(f"tx{n}", ts=3)
        del expected[f"tx{n}"]
    assert model.upsert([transaction(4, ts=2)]).stale == 1  # deleted at 3: a late copy stays deleted
    assert amounts(model) == expected
    assert len(model) == len(expected) == model.frame().height
    assert model.get(EVERYTHING, "tx1") is None
    assert model.get(EVERYTHING, "tx3") is not None


def test_held_ids_answer_the_newest_ts_before_and_after_merging():
    held = HeldIds(merge_at=4)
    ids = [f"tx{n}" for n in range(10)]
    held.put(IdKeys.of(ids), pl.Series(range(10), dtype=pl.Int64()))  # merged: 10 >= 4
    held.put(IdKeys.of(["tx3", "new"]), pl.Series([30, 7], dtype=pl.Int64()))  # one merged, one pending
    held.discard(IdKeys.of(["tx5", "absent"]))
    asked = [*ids, "new", "absent"]
    stamps = held.ts_of(IdKeys.of(asked)).to_list()
    assert dict(zip(asked, stamps, strict=True)) == {
        **{f"tx{n}": n for n in range(10)},
        "tx3": 30,
        "tx5": ABSENT,
        "new": 7,
        "absent": ABSENT,
    }
    assert len(held) == 10
    held.put(IdKeys.of(["tx5"]), pl.Series([50], dtype=pl.Int64()))  # back in its old slot
    assert held.ts_of(IdKeys.of(["tx5"])).to_list() == [50]
    assert len(held) == 11
