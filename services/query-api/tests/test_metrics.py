"""DerivedMetrics on hand-computed examples; the property tests compare many random sets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from query_documents import T0, transaction

from query_api.metrics import compute_metrics
from query_api.scope import EventScope
from query_api.timezones import check_time_zone


def metrics_of(model, documents, *, time_zone="UTC"):
    model.upsert(documents)
    return compute_metrics(model.rows(EventScope.everything()), time_zone=time_zone).to_json_dict()


def test_no_rows_gives_zero_rates_and_no_peaks(model):
    metrics = metrics_of(model, [])
    assert metrics["ordersCount"] == 0
    assert metrics["refundRate"] == metrics["avgTicketPrice"] == metrics["redemptionRate"] == 0.0
    assert metrics["peakPurchaseHour"] is None
    assert metrics["peakPurchaseDay"] is None


def test_every_field_on_two_orders(model):
    metrics = metrics_of(
        model,
        [
            transaction(
                1,
                TotalTickets=3,
                TotalAmount=30,
                OrganizerAmount=27,
                PlatformFee=1,
                PaymentProviderFee=1.5,
                TaxFee=0.5,
                IsRefunded=True,
                TotalScanCount=4,
                TotalTicketRedeemed=2,
                TicketRedemptionDateTime=T0 + timedelta(hours=6),
            ),
            transaction(2, TotalAmount=10, OrganizerAmount=9, PurchaseFrom="Box Office", IsValid=False),
        ],
    )
    assert metrics == {
        "ticketsSold": 4,
        "ordersCount": 2,
        "grossRevenue": 40.0,
        "organizerNet": 36.0,
        "totalFees": 3.0,
        "refundCount": 1,
        "refundAmount": 30.0,
        "refundRate": 0.5,
        "disputeCount": 0,
        "disputeRate": 0.0,
        "validTicketsCount": 1,
        "validRate": 0.5,
        "totalScans": 4,
        "redeemedTickets": 2,
        "redemptionRate": 0.5,
        "onlineCount": 1,
        "boxOfficeCount": 1,
        "onlineShare": 0.5,
        "avgTicketPrice": 10.0,
        "avgOrderValue": 20.0,
        "avgRedemptionLag": 6.0,
        "peakPurchaseHour": 12,
        "peakPurchaseDay": "Friday",
    }


def test_peaks_are_local_and_ties_go_to_the_earliest(model):
    # 18:30 UTC on Friday 1 May is 00:00 on Saturday in Kolkata; 10:00 UTC on Sunday is 15:30 there.
    documents = [
        transaction(1, PurchaseDate=T0 + timedelta(hours=6, minutes=30)),
        transaction(2, PurchaseDate=T0 + timedelta(days=1, hours=22)),
    ]
    metrics = metrics_of(model, documents, time_zone="Asia/Kolkata")
    assert (metrics["peakPurchaseHour"], metrics["peakPurchaseDay"]) == (0, "Saturday")


def test_unknown_time_zones_are_refused():
    assert check_time_zone("Australia/Adelaide") == "Australia/Adelaide"
    with pytest.raises(ValueError, match="IANA"):
        check_time_zone("Mars/Olympus")
