"""Pages of transactions and customers: every row exactly once, stable order, scope beneath all."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from query_api_support import scope_and_filters
from query_documents import T0, transaction
from reference import Query, instant, matches
from test_properties import EVENTS, SETTINGS, assert_close, documents, queries, subsets

from otcommon.normalize import stable_id
from query_api.filters import TransactionFilter
from query_api.pagination import MAX_PAGE_SIZE, RUN_LENGTH, CursorError, PageRequest, paginate, repaired
from query_api.readmodel import ReadModel
from query_api.scope import EventScope
from query_api.tables import customer_detail, customers_page, transactions_page

EVERYTHING = EventScope.everything()
NO_FILTER = TransactionFilter()


def sample(n: int) -> dict:
    return transaction(
        n,
        event=("a", "b", "c")[n % 3],
        TotalAmount=float(10 * (n % 4)),
        Name=("Ana", "bo", "Cy", "")[n % 4],
        PurchaseDate=T0 + timedelta(minutes=n % 5),
        TicketRedemptionDateTime=None if n % 3 else T0 + timedelta(days=1, minutes=n % 2),
    )


def expected_order(documents, sort, descending):
    present = sorted((d for d in documents if d[sort] is not None), key=lambda d: d["id"])
    present.sort(key=lambda d: d[sort], reverse=descending)  # stable: ids stay ascending within ties
    missing = sorted((d for d in documents if d[sort] is None), key=lambda d: d["id"])
    return [d["id"] for d in present + missing]


def walk_by_cursor(model, request_of, filters=NO_FILTER, scope=EVERYTHING, between_pages=None):
    seen, cursor = [], None
    while True:
        rows, page = transactions_page(model, scope, filters, request_of(cursor))
        seen.extend(row["id"] for row in rows)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
        if between_pages is not None:
            between_pages()


SORTS = ("TotalAmount", "Name", "TicketRedemptionDateTime", "PurchaseDate", "eventId")


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(0, 40),
    sort=st.sampled_from(SORTS),
    descending=st.booleans(),
    page_size=st.integers(1, 9),
)
def test_both_paging_styles_return_every_row_once_in_a_stable_order(count, sort, descending, page_size):
    documents = [sample(n) for n in range(count)]
    model = ReadModel()
    model.upsert(documents)
    expected = expected_order(documents, sort, descending)

    by_cursor = walk_by_cursor(
        model,
        lambda cursor: PageRequest(sort=sort, descending=descending, page_size=page_size, cursor=cursor),
    )
    assert by_cursor == expected

    by_index, index = [], 0
    while True:
        rows, page = transactions_page(
            model,
            EVERYTHING,
            NO_FILTER,
            PageRequest(sort=sort, descending=descending, page_size=page_size, page=index),
        )
        assert page.total == count
        assert page.page == index
        if not rows:
            break
        by_index.extend(row["id"] for row in rows)
        index += 1
    assert by_index == expected


def test_cursor_walk_sees_each_unchanged_row_once_while_rows_change_underneath(model):
    documents = [sample(n) for n in range(60)]
    model.upsert(documents)
    changes = iter(range(1000, 1100))
    deleted: set[str] = set()

    def change_underneath():
        n = next(changes)
        model.upsert([sample(n)])  # a new row
        model.upsert([sample(n - 1000) | {"Name": "Renamed", "_ts": 2}])  # a change that keeps the sort value
        victim = f"tx{(n * 7) % 60}"
        if model.delete(victim, ts=3):
            deleted.add(victim)

    seen = walk_by_cursor(
        model,
        lambda cursor: PageRequest(sort="TotalAmount", descending=True, page_size=4, cursor=cursor),
        between_pages=change_underneath,
    )
    assert len(seen) == len(set(seen)), "a row appeared twice"
    untouched = {d["id"] for d in documents} - deleted
    assert untouched <= set(seen)


def test_filters_and_scope_apply_to_pages(model):
    model.upsert([sample(n) for n in range(30)])
    scope = EventScope.only({"a", "b"})
    filters = TransactionFilter.of(event_ids=["b", "c"], search="ana")
    seen = walk_by_cursor(
        model, lambda cursor: PageRequest(sort="PurchaseDate", page_size=2, cursor=cursor), filters, scope
    )
    assert seen
    assert all(n % 3 == 1 and n % 4 == 0 for n in (int(i[2:]) for i in seen))
    assert len(seen) == sum(1 for n in range(30) if n % 3 == 1 and n % 4 == 0)


def test_a_cursor_only_continues_the_query_it_came_from(model):
    model.upsert([sample(n) for n in range(10)])
    _, page = transactions_page(model, EVERYTHING, NO_FILTER, PageRequest(sort="Name", page_size=3))
    assert page.next_cursor is not None
    with pytest.raises(CursorError, match="another sort"):
        transactions_page(model, EVERYTHING, NO_FILTER, PageRequest(sort="Email", cursor=page.next_cursor))
    with pytest.raises(CursorError, match="another sort"):
        transactions_page(
            model,
            EVERYTHING,
            TransactionFilter.of(search="x"),
            PageRequest(sort="Name", cursor=page.next_cursor),
        )
    with pytest.raises(CursorError, match="not one this API issued"):
        transactions_page(model, EVERYTHING, NO_FILTER, PageRequest(sort="Name", cursor="not-a-cursor"))


def test_page_size_and_sort_are_bounded(model):
    with pytest.raises(ValueError, match="page size"):
        PageRequest(sort="Name", page_size=501)
    with pytest.raises(ValueError, match="sort must be one of"):
        transactions_page(model, EVERYTHING, NO_FILTER, PageRequest(sort="searchText"))


def test_customers_are_deduplicated_with_the_latest_name(model):
    model.upsert(
        [
            transaction(1, event="a", Name="Ana", Email="Ana@Example.com", PurchaseDate=T0, TotalAmount=5),
            transaction(2, event="b", Name="", Email="ana@example.com ", PurchaseDate=T0 + timedelta(days=2)),
            transaction(
                3,
                event="a",
                Name="Ana Lima",
                Email="ANA@example.com",
                PurchaseDate=T0 + timedelta(days=1),
                IsRefunded=True,
                TotalTicketRedeemed=1,
            ),
            transaction(4, event="a", Name="Bo", Email="", Phone="+1 (555) 010-9999"),
            transaction(5, event="c", Name="Bo", Email="", Phone="15550109999", IsDisputed=True),
        ]
    )
    rows, page = customers_page(model, EVERYTHING, NO_FILTER, PageRequest(sort="totalSpent", descending=True))
    assert page.total == 2
    ana = next(row for row in rows if row["email"])
    assert (ana["name"], ana["orders"], ana["totalSpent"], ana["redeemedTickets"]) == ("Ana Lima", 3, 25.0, 1)
    assert (ana["refunded"], ana["disputed"], ana["events"]) == (True, False, ["a", "b"])
    assert ana["firstPurchase"] < ana["lastPurchase"]
    bo = next(row for row in rows if not row["email"])
    assert (bo["orders"], bo["disputed"], bo["events"]) == (2, True, ["a", "c"])

    detail = customer_detail(model, EventScope.only({"a"}), bo["id"])
    assert detail is not None
    buyer, transactions = detail
    assert [t["id"] for t in transactions] == ["tx4"]
    assert buyer["events"] == ["a"]
    assert customer_detail(model, EventScope.only({"b"}), bo["id"]) is None


def test_walking_customer_pages_returns_each_buyer_once(model):
    model.upsert(
        [transaction(n, Email=f"buyer{n % 23}@example.com", TotalAmount=float(n % 5)) for n in range(80)]
    )
    seen, cursor = [], None
    while True:
        rows, page = customers_page(
            model, EVERYTHING, NO_FILTER, PageRequest(sort="totalSpent", page_size=5, cursor=cursor)
        )
        seen.extend(row["id"] for row in rows)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 23


# -- the customer table against an independent computation -------------------------------------

BUYERS = (
    {"Name": "Ana Lima", "Email": "ana@example.com", "Phone": ""},
    {"Name": "ana", "Email": " ANA@example.com", "Phone": "+1 555 0100"},
    {"Name": "", "Email": "", "Phone": "+1 (555) 0100"},
    {"Name": "Bo", "Email": "", "Phone": "15550100"},
    {"Name": "Bo", "Email": "", "Phone": ""},
    {"Name": "  ", "Email": "", "Phone": ""},
)
"""Buyers that collide on email, phone or name, with blanks, so rows merge into customers."""


@st.composite
def buyer_documents(draw: st.DrawFn, n: int) -> dict:
    """A transaction of one of a few buyers, with purchases often at the same instant (ties)."""
    document = draw(documents(n))
    purchased = T0 + timedelta(minutes=draw(st.integers(0, 3)))
    return transaction(
        n,
        event=document["eventId"],
        **draw(st.sampled_from(BUYERS)),
        PurchaseDate=purchased,
        TotalTickets=document["TotalTickets"],
        TotalAmount=document["TotalAmount"],
        TotalTicketRedeemed=document["TotalTicketRedeemed"],
        IsRefunded=document["IsRefunded"],
        IsDisputed=document["IsDisputed"],
        IsValid=document["IsValid"],
        TicketTypes=document["TicketTypes"],
        PurchaseFrom=document["PurchaseFrom"],
        ReferralCode=document["ReferralCode"],
    )


def buyer_rows() -> st.SearchStrategy[list[dict]]:
    return st.sampled_from((0, 1, 3, 8, 20)).flatmap(
        lambda count: st.tuples(*(buyer_documents(n) for n in range(count))).map(list)
    )


def expected_customers(documents: list[dict]) -> dict[str, dict]:
    """Customers computed in plain Python from the stored documents (SPEC section 4)."""
    by_buyer: dict[str, list[dict]] = {}
    for document in documents:
        key = document["customerKey"]
        buyer = stable_id(key) if key else stable_id("order", document["id"])
        by_buyer.setdefault(buyer, []).append(document)

    def latest(orders: list[dict], field: str) -> str | None:
        present = [order for order in orders if order[field] and order[field].strip()]
        newest = max(present, key=lambda order: (instant(order["PurchaseDate"]), order["id"]), default=None)
        return None if newest is None else newest[field]

    return {
        buyer: {
            "id": buyer,
            "name": latest(orders, "Name"),
            "email": latest(orders, "Email"),
            "phone": latest(orders, "Phone"),
            "firstPurchase": min(order["PurchaseDate"] for order in orders),
            "lastPurchase": max(order["PurchaseDate"] for order in orders),
            "orders": len(orders),
            "tickets": sum(order["TotalTickets"] for order in orders),
            "totalSpent": sum(order["TotalAmount"] for order in orders),
            "redeemedTickets": sum(order["TotalTicketRedeemed"] for order in orders),
            "refunded": any(order["IsRefunded"] for order in orders),
            "disputed": any(order["IsDisputed"] for order in orders),
            "events": sorted({order["eventId"] for order in orders}),
        }
        for buyer, orders in by_buyer.items()
    }


def all_customers(model: ReadModel, scope: EventScope, filters: TransactionFilter) -> dict[str, dict]:
    rows, page = customers_page(model, scope, filters, PageRequest(sort="lastPurchase", page_size=500))
    assert page.total == len(rows)
    return {row["id"]: row for row in rows}


def assert_same_customers(actual: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(actual) == set(expected)
    for buyer, wanted in expected.items():
        got = actual[buyer]
        assert set(got) == set(wanted), buyer
        for column, value in wanted.items():
            assert_close(got[column], value, f"{buyer}.{column}")


@SETTINGS
@given(rows=buyer_rows(), data=st.data())
def test_customers_equal_the_independent_computation_for_any_filters(rows, data):
    query = data.draw(queries(rows))
    model = ReadModel()
    model.upsert(rows)
    scope, filters = scope_and_filters(query)
    expected = expected_customers([row for row in rows if matches(row, query)])
    assert_same_customers(all_customers(model, scope, filters), expected)
    # Asked again, the answer comes from the cache and is the same.
    assert_same_customers(all_customers(model, scope, filters), expected)


@SETTINGS
@given(
    rows=buyer_rows(),
    data=st.data(),
    scope=st.none() | subsets(EVENTS),
    event_ids=subsets(EVENTS),
)
def test_customers_of_whole_events_follow_upserts_and_deletes(rows, data, scope, event_ids):
    """Per-event partials and cached tables are rebuilt for the events a change touched."""
    model = ReadModel()
    model.upsert(rows)
    seen = EventScope.everything() if scope is None else EventScope.only(scope)
    whole_events = TransactionFilter.of(event_ids=event_ids)
    every_purchase = TransactionFilter.of(event_ids=event_ids, date_from=datetime(1970, 1, 1, tzinfo=UTC))
    all_customers(model, seen, whole_events)  # partials and the table built here, then rows change
    all_customers(model, EVERYTHING, NO_FILTER)
    held = {row["id"]: row for row in rows}
    for step in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(0, len(rows) + 2))
        if data.draw(st.booleans()):
            model.delete(f"tx{n}", ts=10 + step)
            held.pop(f"tx{n}", None)
        else:
            document = {**data.draw(buyer_documents(n)), "_ts": 10 + step}
            model.upsert([document])
            held[document["id"]] = document
    query = Query(scope=None if scope is None else frozenset(scope), event_ids=event_ids)
    expected = expected_customers([row for row in held.values() if matches(row, query)])
    assert_same_customers(all_customers(model, seen, whole_events), expected)
    assert_same_customers(all_customers(model, seen, every_purchase), expected)  # the row path
    everyone = expected_customers(list(held.values()))
    assert_same_customers(all_customers(model, EVERYTHING, NO_FILTER), everyone)


def test_a_cursor_of_a_scoped_token_is_accepted_by_every_replica():
    """Replicas hash text differently (PYTHONHASHSEED): the cursor must not depend on set order."""
    program = (
        "from query_api.filters import TransactionFilter\n"
        "from query_api.pagination import PageRequest\n"
        "from query_api.readmodel import ReadModel\n"
        "from query_api.scope import EventScope\n"
        "from query_api.tables import transactions_page\n"
        "from query_documents import transaction\n"
        "model = ReadModel()\n"
        "model.upsert([transaction(n, event=f'event-{n % 7}') for n in range(10)])\n"
        "scope = EventScope.only([f'event-{n}' for n in range(7)])\n"
        "request = PageRequest(sort='Name', page_size=2)\n"
        "_, page = transactions_page(model, scope, TransactionFilter(), request)\n"
        "print(page.next_cursor)\n"
    )
    tests = Path(__file__).parent
    cursors = {
        subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(tests)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(cursors) == 1


@pytest.mark.parametrize("descending", [False, True])
def test_walking_past_a_sorted_run_selects_the_next_one(descending):
    """Pages beyond the first run (RUN_LENGTH rows) are cut from a run selected after the cursor."""
    count = 2 * RUN_LENGTH + 321
    frame = pl.DataFrame(
        {
            "id": [f"r{n:05d}" for n in range(count)],
            "value": [None if n % 17 == 0 else (n * 7919) % 101 for n in range(count)],
        }
    )
    present = frame.filter(pl.col("value").is_not_null()).sort(
        ["value", "id"], descending=[descending, False], maintain_order=True
    )
    expected = present["id"].to_list() + frame.filter(pl.col("value").is_null())["id"].sort().to_list()
    sortable = {"value": "value"}
    walked, cursor, run, runs_selected = [], None, None, set()
    while True:
        request = PageRequest(sort="value", descending=descending, page_size=MAX_PAGE_SIZE, cursor=cursor)
        page = paginate(frame, request, sortable=sortable, key="id", query_fingerprint="q", run=run)
        walked.extend(page.rows["id"].to_list())
        run = page.run
        runs_selected.add(id(run))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert walked == expected
    assert len(runs_selected) > 1
    by_index = []
    for index in range(count // MAX_PAGE_SIZE + 1):
        request = PageRequest(sort="value", descending=descending, page_size=MAX_PAGE_SIZE, page=index)
        page = paginate(frame, request, sortable=sortable, key="id", query_fingerprint="q", run=run)
        by_index.extend(page.rows["id"].to_list())
        run = page.run
    assert by_index == expected


@settings(max_examples=30, deadline=None)
@given(
    descending=st.booleans(),
    from_cursor=st.booleans(),
    changes=st.lists(st.tuples(st.integers(0, 2 * RUN_LENGTH), st.none() | st.integers(0, 60)), max_size=12),
)
def test_a_repaired_run_equals_the_run_selected_again(descending, from_cursor, changes):
    """After some rows change value, appear or go, a repaired run holds the same rows in the same
    order as the same span of the order selected again (so its pages are the pages of the new rows)."""
    count = 2 * RUN_LENGTH
    values: dict[int, int | None] = {n: None if n % 13 == 0 else (n * 7919) % 61 for n in range(count)}
    sortable = {"value": "value"}

    def frame() -> pl.DataFrame:
        keys = sorted(values)
        return pl.DataFrame(
            {"key": keys, "value": [values[n] for n in keys]}, schema={"key": pl.UInt128, "value": pl.Int64}
        )

    def position(key: int, value: int | None) -> tuple[bool, int, int]:
        """Where a row sorts: nulls last, then by value, then by key."""
        return (value is None, 0 if value is None else -value if descending else value, key)

    cursor, start = None, None
    if from_cursor:
        first = paginate(
            frame(),
            PageRequest(sort="value", descending=descending, page_size=300),
            sortable=sortable,
            key="key",
            query_fingerprint="q",
        )
        cursor, (last_key, last_value) = first.next_cursor, first.rows.row(first.rows.height - 1)
        start = position(last_key, last_value)
    request = PageRequest(sort="value", descending=descending, page_size=50, cursor=cursor)
    run = paginate(frame(), request, sortable=sortable, key="key", query_fingerprint="q").run
    assert run is not None
    assert not run.complete
    for key, value in changes:  # None: the row goes
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    changed = pl.Series([key for key, _ in changes], dtype=pl.UInt128)

    fixed = repaired(run, frame(), changed, key="key")

    order = sorted((position(key, value), key, value) for key, value in values.items())
    expected = [{"key": key, "value": value} for at, key, value in order if start is None or at > start]
    assert fixed.rows.height >= RUN_LENGTH - len(changes)
    assert fixed.rows.to_dicts() == expected[: fixed.rows.height]
