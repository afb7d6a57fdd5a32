"""Breakdowns on hand-computed examples; the property tests compare many random sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from query_documents import T0, transaction

from query_api import breakdowns
from query_api.analytics import Breakdown, analyze, report_json
from query_api.filters import TransactionFilter
from query_api.scope import EventScope

EVERYTHING = EventScope.everything()


def keyed(rows):
    return {row.key: (row.orders_count, row.tickets_sold, row.gross_revenue) for row in rows}


def test_a_multi_type_order_counts_under_each_type(model):
    model.upsert(
        [
            transaction(1, TicketTypes="VIP, General", TotalTickets=2, TotalAmount=50),
            transaction(2, TicketTypes="general", TotalAmount=20),
            transaction(3, TicketTypes=""),
        ]
    )
    assert keyed(breakdowns.by_ticket_type(model.rows(EVERYTHING))) == {
        "general": (2, 3, 70.0),
        "vip": (1, 2, 50.0),
        None: (1, 1, 10.0),
    }


def test_sources_are_spelled_as_the_filter_takes_them(model):
    model.upsert(
        [transaction(1, PurchaseFrom="Box Office"), transaction(2), transaction(3, PurchaseFrom="kiosk")]
    )
    assert keyed(breakdowns.by_source(model.rows(EVERYTHING))) == {
        "boxOffice": (1, 1, 10.0),
        "online": (1, 1, 10.0),
        "other": (1, 1, 10.0),
    }


def test_route_summary_names_the_top_connected_account_and_counts_unresolved(model):
    model.upsert(
        [
            transaction(1, PaymentID="pi_1", stripeRouteType="platform", TotalAmount=100),
            transaction(
                2, PaymentID="pi_2", stripeRouteType="connected", stripeDestinationAccountId="acct_b"
            ),
            transaction(
                3,
                PaymentID="pi_3",
                stripeRouteType="connected",
                stripeDestinationAccountId="acct_a",
                stripeDestinationAccountName="Arena",
                TotalAmount=30,
            ),
            transaction(4, PaymentID="pi_4", enrichmentState="unresolved"),
        ]
    )
    summary = breakdowns.route_summary(model.rows(EVERYTHING))
    assert keyed(summary.routes) == {"platform": (1, 1, 100.0), "connected": (2, 2, 40.0), None: (1, 1, 10.0)}
    assert summary.top_connected_account is not None
    assert (summary.top_connected_account.account_id, summary.top_connected_account.account_name) == (
        "acct_a",
        "Arena",
    )
    assert summary.unresolved_count == 1


def test_top_connected_account_ties_go_to_the_lowest_id(model):
    model.upsert(
        [
            transaction(
                n, PaymentID=f"pi_{n}", stripeRouteType="connected", stripeDestinationAccountId=account
            )
            for n, account in enumerate(("acct_b", "acct_a", "acct_c"))
        ]
    )
    top = breakdowns.route_summary(model.rows(EVERYTHING)).top_connected_account
    assert top is not None
    assert top.account_id == "acct_a"


def test_hours_repeated_when_clocks_go_back_are_two_buckets(model):
    # Adelaide leaves daylight saving at 03:00 (+10:30) on 5 April 2026: 02:00-03:00 happens twice.
    first = datetime(2026, 4, 4, 15, 45, tzinfo=UTC)  # 02:15 +10:30
    second = datetime(2026, 4, 4, 16, 45, tzinfo=UTC)  # 02:15 +09:30
    model.upsert([transaction(1, PurchaseDate=first), transaction(2, PurchaseDate=second)])
    rows = model.rows(EVERYTHING)
    hourly = breakdowns.time_series(rows, granularity="hour", time_zone="Australia/Adelaide")
    assert [point.bucket for point in hourly] == ["2026-04-05T02:00:00+10:30", "2026-04-05T02:00:00+09:30"]
    daily = breakdowns.time_series(rows, granularity="day", time_zone="Australia/Adelaide")
    assert [(point.bucket, point.orders_count) for point in daily] == [("2026-04-05", 2)]


def test_hours_west_of_utc_are_named_with_a_negative_offset(model):
    # 23:30 UTC on 3 May 2026 is 19:30 in New York (-04:00) and 21:00 in St. John's (-02:30).
    model.upsert([transaction(1, PurchaseDate=datetime(2026, 5, 3, 23, 30, tzinfo=UTC))])
    rows = model.rows(EVERYTHING)
    new_york = breakdowns.time_series(rows, granularity="hour", time_zone="America/New_York")
    assert [point.bucket for point in new_york] == ["2026-05-03T19:00:00-04:00"]
    st_johns = breakdowns.time_series(rows, granularity="hour", time_zone="America/St_Johns")
    assert [point.bucket for point in st_johns] == ["2026-05-03T21:00:00-02:30"]


def test_weeks_start_on_monday_in_the_local_zone(model):
    # Sunday 23:30 UTC is Monday 05:00 in Kolkata: the order belongs to the next week there.
    sunday_night = datetime(2026, 5, 3, 23, 30, tzinfo=UTC)
    model.upsert([transaction(1, PurchaseDate=sunday_night)])
    rows = model.rows(EVERYTHING)
    assert [p.bucket for p in breakdowns.time_series(rows, granularity="week", time_zone="UTC")] == [
        "2026-04-27"
    ]
    kolkata = breakdowns.time_series(rows, granularity="week", time_zone="Asia/Kolkata")
    assert [p.bucket for p in kolkata] == ["2026-05-04"]


def test_the_report_carries_only_the_breakdowns_asked_for(model):
    model.upsert([transaction(1), transaction(2, PurchaseDate=T0 + timedelta(days=1))])
    bare = report_json(analyze(model, EVERYTHING, TransactionFilter()))
    assert bare["ordersCount"] == 2
    assert "byEvent" not in bare
    assert bare["peakPurchaseDay"] == "Friday"
    full = report_json(
        analyze(model, EVERYTHING, TransactionFilter(), include=list(Breakdown), granularity="day")
    )
    assert {"byTicketType", "bySource", "byReferralCode", "byEvent", "byDepositStatus", "routing"} <= set(
        full
    )
    assert [point["bucket"] for point in full["timeSeries"]] == ["2026-05-01", "2026-05-02"]
