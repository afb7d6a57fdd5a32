"""Metrics and breakdowns equal an independent plain-Python computation for random rows and filters."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_api_support import scope_and_filters
from query_documents import transaction
from reference import BREAKDOWN_KEYS, Query, grouped, matches, metrics, time_series, top_connected_account

from query_api.analytics import Breakdown, analyze, report_json
from query_api.readmodel import ReadModel

EVENTS = ("rome", "oslo", "lima")
TIME_ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide", "America/New_York")
# Windows around daylight-saving changes: Adelaide (5 April, 4 October), New York (8 March, 1 November).
WINDOW_STARTS = tuple(
    datetime(2026, month, day, tzinfo=UTC) for month, day in ((4, 2), (10, 1), (3, 6), (10, 30))
)
WINDOW = timedelta(days=5)
TICKET_TYPES = ("VIP", "General", "VIP, General", "Student, vip", "", "VIP (Meet, Greet)")
SOURCES = ("online", "Box Office", "boxoffice", "kiosk", "")
REFERRAL_CODES = (None, "Summer", " SUMMER ", "fall")
# Short (no gram: a scan), long, mixed case, nothing holds it, a hit in Name, Email, PaymentID, ticketId.
SEARCHES = ("ANA", "LIMA", "Ana  Lima", "PI_1", "Example.com", "t2", "bo", "nobody", "buyer1@EXAMPLE.COM")
# Segments of a few keys, so the search index lists most rows (the rest are not indexed yet).
INDEX = {"search_segment_keys": 4, "common_gram_share": 0.5}
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def moments() -> st.SearchStrategy[datetime]:
    """Instants on a quarter-hour grid (so filter bounds often equal a purchase), some a little after."""
    return st.builds(
        lambda start, quarter, ms: start + timedelta(minutes=15 * quarter, milliseconds=ms),
        st.sampled_from(WINDOW_STARTS),
        st.integers(0, int(WINDOW.total_seconds() // 900)),
        st.sampled_from((0, 0, 1, 59_999, 899_999)),
    )


@st.composite
def documents(draw: st.DrawFn, n: int) -> dict[str, Any]:
    purchased = draw(moments())
    redeemed = draw(st.none() | st.integers(0, 3 * 24 * 60).map(lambda m: purchased + timedelta(minutes=m)))
    route = draw(st.sampled_from((None, "platform", "connected")))
    # A few round amounts make ties (for the top account) likely; cents make sums inexact in binary.
    money = st.sampled_from((0.0, 10.0, 25.5)) | st.integers(0, 50_000).map(lambda cents: cents / 100)
    return transaction(
        n,
        event=draw(st.sampled_from(EVENTS)),
        Name=draw(st.sampled_from(("Ana Lima", "Bo", ""))),
        TicketTypes=draw(st.sampled_from(TICKET_TYPES)),
        TotalTickets=draw(st.integers(1, 6)),
        TotalAmount=draw(money),
        OrganizerAmount=draw(money),
        PlatformFee=draw(money),
        PaymentProviderFee=draw(money),
        TaxFee=draw(money),
        PurchaseDate=purchased,
        TicketRedemptionDateTime=redeemed,
        PurchaseFrom=draw(st.sampled_from(SOURCES)),
        IsRefunded=draw(st.booleans()),
        IsDisputed=draw(st.booleans()),
        IsValid=draw(st.booleans()),
        ReferralCode=draw(st.sampled_from(REFERRAL_CODES)),
        TotalScanCount=draw(st.integers(0, 8)),
        TotalTicketRedeemed=draw(st.integers(0, 6)),
        PaymentID=f"pi_{n}",
        stripeRouteType=route,
        stripeDestinationAccountId=draw(st.sampled_from(("acct_a", "acct_b")))
        if route == "connected"
        else None,
        depositStatus=draw(st.sampled_from((None, "paid", "pending", "failed", "not_traceable"))),
        enrichmentState=draw(st.sampled_from(("pending", "enriched", "unresolved"))),
    )


@st.composite
def row_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.sampled_from((0, 1, 2, 5, 12, 30)))
    return [draw(documents(n)) for n in range(count)]


def subsets(values: tuple[Any, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(st.sampled_from(values), max_size=3, unique=True).map(tuple)


def rarely(strategy: st.SearchStrategy[Any], default: Any) -> st.SearchStrategy[Any]:
    """The strategy in about one draw of six, else the default, so that most queries select rows."""
    return st.integers(0, 5).flatmap(lambda pick: strategy if pick == 0 else st.just(default))


@st.composite
def queries(draw: st.DrawFn, rows: list[dict[str, Any]]) -> Query:
    # Bounds are often a row's own purchase instant, to test inclusive `from` and exclusive `to`.
    purchases = [datetime.fromisoformat(row["PurchaseDate"]) for row in rows]
    instants = st.sampled_from(purchases) | moments() if purchases else moments()
    start = draw(rarely(instants, None))
    end = draw(rarely(instants, None))
    return Query(
        scope=draw(rarely(subsets(EVENTS).map(frozenset), None)),
        event_ids=draw(rarely(subsets(EVENTS), ())),
        date_from=start,
        date_to=end,
        date_mode=draw(st.sampled_from(("purchase", "redemption"))),
        ticket_types=draw(rarely(subsets(("vip", " GENERAL", "student", "vip (meet, greet)", "nope")), ())),
        sources=draw(rarely(subsets(("online", "boxOffice", "BOXOFFICE", "Other")), ())),
        refunded=draw(rarely(st.booleans(), None)),
        disputed=draw(rarely(st.booleans(), None)),
        valid=draw(rarely(st.booleans(), None)),
        referral_codes=draw(rarely(subsets(("summer", "FALL", "none")), ())),
        search=draw(rarely(st.sampled_from(SEARCHES), None)),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], Query]:
    rows = draw(row_sets())
    return rows, draw(queries(rows))


def run(rows: list[dict[str, Any]], query: Query, time_zone: str, granularity: str) -> dict[str, Any]:
    model = ReadModel(**INDEX)
    model.upsert(rows)
    scope, filters = scope_and_filters(query)
    report = analyze(
        model, scope, filters, time_zone=time_zone, include=list(Breakdown), granularity=granularity
    )  # type: ignore[arg-type]
    return report_json(report)


def assert_close(actual: Any, expected: Any, where: str) -> None:
    if isinstance(expected, float) or isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), (where, actual, expected)
    else:
        assert actual == expected, (where, actual, expected)


def breakdown_dict(rows: list[dict[str, Any]]) -> dict[Any, tuple[Any, ...]]:
    keyed = {
        row["key"]: (
            row["ordersCount"],
            row["ticketsSold"],
            row["grossRevenue"],
            row["organizerNet"],
            row["refundCount"],
        )
        for row in rows
    }
    assert len(keyed) == len(rows), "a key appears twice"
    return keyed


def assert_groups_equal(
    actual: dict[Any, tuple[Any, ...]], expected: dict[Any, tuple[Any, ...]], name: str
) -> None:
    assert set(actual) == set(expected), name
    for key, values in expected.items():
        for index, value in enumerate(values):
            assert_close(actual[key][index], value, f"{name}[{key}][{index}]")


@SETTINGS
@given(case=cases(), time_zone=st.sampled_from(TIME_ZONES))
def test_metrics_equal_the_independent_computation(case, time_zone):
    rows, query = case
    answer = run(rows, query, time_zone, "day")
    selected = [row for row in rows if matches(row, query)]
    for name, expected in metrics(selected, time_zone).items():
        assert_close(answer[name], expected, name)


@SETTINGS
@given(case=cases(), time_zone=st.sampled_from(TIME_ZONES))
def test_breakdowns_equal_the_independent_computation(case, time_zone):
    rows, query = case
    answer = run(rows, query, time_zone, "day")
    selected = [row for row in rows if matches(row, query)]
    for name, keys_of in BREAKDOWN_KEYS.items():
        assert_groups_equal(breakdown_dict(answer[name]), grouped(selected, keys_of), name)
    routes = answer["routing"]
    assert_groups_equal(
        breakdown_dict(routes["routes"]), grouped(selected, lambda r: [r.get("stripeRouteType")]), "routes"
    )
    top = routes["topConnectedAccount"]
    assert (top and top["accountId"]) == top_connected_account(selected)
    assert routes["unresolvedCount"] == sum(1 for r in selected if r["enrichmentState"] == "unresolved")


@SETTINGS
@given(
    case=cases(),
    time_zone=st.sampled_from(TIME_ZONES),
    granularity=st.sampled_from(("hour", "day", "week")),
)
def test_time_series_equal_the_independent_computation(case, time_zone, granularity):
    rows, query = case
    answer = run(rows, query, time_zone, granularity)
    selected = [row for row in rows if matches(row, query)]
    expected = time_series(selected, granularity=granularity, time_zone=time_zone)
    actual = [
        (p["bucket"], p["ordersCount"], p["ticketsSold"], p["grossRevenue"], p["organizerNet"])
        for p in answer["timeSeries"]
    ]
    assert [point[0] for point in actual] == [point[0] for point in expected]
    for got, wanted in zip(actual, expected, strict=True):
        for index, value in enumerate(wanted):
            assert_close(got[index], value, f"{got[0]}[{index}]")
