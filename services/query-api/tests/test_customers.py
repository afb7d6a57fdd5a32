"""Customer pages against an independent de-duplication: every sort, both paging styles, rows changing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_api_support import scope_and_filters
from query_documents import T0, transaction
from reference import instant, matches
from test_properties import assert_close, queries
from test_tables import assert_same_customers, buyer_documents, expected_customers

from query_api.columns import CUSTOMER_ID
from query_api.customerquery import CustomerQuery
from query_api.customers import CUSTOMER_COLUMNS, EveryoneKeys
from query_api.filters import TransactionFilter
from query_api.pagination import PageRequest
from query_api.readmodel import ReadModel
from query_api.scope import EventScope
from query_api.tables import CUSTOMER_SORTS, customers_page

EVERYTHING = EventScope.everything()
NO_FILTER = TransactionFilter()
EVERY_PURCHASE = TransactionFilter.of(date_from=datetime(1970, 1, 1, tzinfo=UTC))
"""Selects every row through the row path (a date filter), where NO_FILTER uses the kept keys."""
WALK_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""Each example walks every page (a few Polars queries each): fewer examples than the other properties."""


@st.composite
def exact_buyer_documents(draw: st.DrawFn, n: int) -> dict[str, Any]:
    """``buyer_documents`` with amounts exact in binary, so sums tie exactly and orders are certain."""
    document = draw(buyer_documents(n))
    return {**document, "TotalAmount": draw(st.sampled_from((0.0, 2.5, 10.0, 12.25)))}


def exact_buyer_rows() -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.sampled_from((0, 1, 4, 12, 24)).flatmap(
        lambda count: st.tuples(*(exact_buyer_documents(n) for n in range(count))).map(list)
    )


def sort_value(customer: dict[str, Any], sort: str) -> Any:
    value = customer[sort]
    return instant(value) if sort in {"firstPurchase", "lastPurchase"} else value


def expected_order(customers: dict[str, dict[str, Any]], sort: str, *, descending: bool) -> list[str]:
    """Buyer ids by the sort value (nulls last either way), then by id."""
    present = sorted((c for c in customers.values() if c[sort] is not None), key=lambda c: c["id"])
    present.sort(key=lambda c: sort_value(c, sort), reverse=descending)  # stable: ids ascend in ties
    missing = sorted(c["id"] for c in customers.values() if c[sort] is None)
    return [c["id"] for c in present] + missing


def walk(
    model: ReadModel,
    scope: EventScope,
    filters: TransactionFilter,
    request: PageRequest,
    *,
    by_cursor: bool,
    between_pages: Any = None,
) -> list[dict[str, Any]]:
    """Every page of a query, by cursor or by page index; the rows in the order served."""
    seen: list[dict[str, Any]] = []
    index, cursor = 0, None
    while True:
        page_request = PageRequest(
            sort=request.sort,
            descending=request.descending,
            page_size=request.page_size,
            cursor=cursor,
            page=0 if by_cursor else index,
        )
        rows, page = customers_page(model, scope, filters, page_request)
        assert len(rows) <= request.page_size
        assert all(tuple(row) == CUSTOMER_COLUMNS for row in rows)
        seen.extend(rows)
        if (page.next_cursor is None) if by_cursor else not rows:
            return seen
        cursor, index = page.next_cursor, index + 1
        if between_pages is not None:
            between_pages()


@WALK_SETTINGS
@given(
    rows=exact_buyer_rows(),
    data=st.data(),
    sort=st.sampled_from(sorted(CUSTOMER_SORTS)),
    descending=st.booleans(),
    page_size=st.integers(1, 9),
    by_cursor=st.booleans(),
)
def test_pages_equal_the_independent_deduplication_for_any_filters_and_sort(
    rows, data, sort, descending, page_size, by_cursor
):
    query = data.draw(queries(rows))
    model = ReadModel()
    model.upsert(rows)
    scope, filters = scope_and_filters(query)
    expected = expected_customers([row for row in rows if matches(row, query)])
    request = PageRequest(sort=sort, descending=descending, page_size=page_size)

    served = walk(model, scope, filters, request, by_cursor=by_cursor)

    assert [row["id"] for row in served] == expected_order(expected, sort, descending=descending)
    assert_same_customers({row["id"]: row for row in served}, expected)


def spender(n: int, buyer: int, amount: float, **fields: Any) -> dict[str, Any]:
    return transaction(
        n,
        event=("rome", "oslo", "lima")[n % 3],
        Name=f"Buyer {buyer}",
        Email=f"buyer{buyer}@example.com",
        TotalAmount=amount,
        PurchaseDate=T0 + timedelta(minutes=n),
        **fields,
    )


@pytest.mark.parametrize("filters", [NO_FILTER, EVERY_PURCHASE], ids=["kept keys", "row path"])
@pytest.mark.parametrize("sort", ["totalSpent", "name", "lastPurchase"])
def test_a_cursor_walk_sees_each_unchanged_buyer_once_while_rows_change(filters, sort):
    """New buyers, renamed orders and removed orders between pages: the buyers whose sort value
    never changed are each served exactly once (a changed one may cross the cursor)."""
    model = ReadModel()
    held = {n: spender(n, buyer=n % 40, amount=float(n % 7)) for n in range(100)}
    model.upsert(list(held.values()))
    first_rows = {
        row["id"]: row for row in walk(model, EVERYTHING, filters, PageRequest(sort=sort), by_cursor=True)
    }
    changed_buyers: set[str] = set()
    changes = iter(range(1000, 1100))

    def change_underneath() -> None:
        n = next(changes)
        held[n] = spender(n, buyer=n, amount=3.0)  # a new buyer
        # A change to an order that no customer column shows: its buyer's row is built again, the same.
        old = n - 1000
        if old in held:
            held[old] = spender(old, buyer=old % 40, amount=float(old % 7), ts=2, TicketTypes="VIP")
        model.upsert([held[n], *([held[old]] if old in held else [])])
        victim = (n * 7) % 100
        held.pop(victim, None)
        if model.delete(f"tx{victim}", ts=3):
            changed_buyers.update(
                row["id"] for row in first_rows.values() if row["email"] == f"buyer{victim % 40}@example.com"
            )

    seen = walk(
        model,
        EVERYTHING,
        filters,
        PageRequest(sort=sort, page_size=3),
        by_cursor=True,
        between_pages=change_underneath,
    )

    ids = [row["id"] for row in seen]
    unchanged = set(first_rows) - changed_buyers
    assert unchanged, "the walk must keep some buyers unchanged to test anything"
    for buyer in unchanged:
        assert ids.count(buyer) == 1, buyer
    served = walk(model, EVERYTHING, filters, PageRequest(sort=sort, page_size=500), by_cursor=True)
    expected = expected_customers(list(held.values()))
    assert [row["id"] for row in served] == expected_order(expected, sort, descending=False)
    assert_same_customers({row["id"]: row for row in served}, expected)
    final = {row["id"]: row for row in served}
    for buyer in unchanged:
        for column in CUSTOMER_COLUMNS:
            assert_close(final[buyer][column], first_rows[buyer][column], f"{buyer}.{column}")


def test_every_buyer_follows_a_change_under_another_sort():
    """The kept query of every buyer, asked in one order, changed, then asked in another and again in
    the first."""
    model = ReadModel()
    documents = {n: spender(n, buyer=n % 5, amount=float(n)) for n in range(12)}
    model.upsert(list(documents.values()))
    walk(model, EVERYTHING, NO_FILTER, PageRequest(sort="totalSpent", page_size=2), by_cursor=True)
    documents[12] = spender(12, buyer=2, amount=100.0)  # buyer 2's last purchase: first to last
    model.upsert([documents[12]])
    model.delete("tx3", ts=5)
    del documents[3]

    expected = expected_customers(list(documents.values()))
    # The other order first, then the first order again (its run kept, and repaired).
    for sort in ("lastPurchase", "totalSpent"):
        served = walk(model, EVERYTHING, NO_FILTER, PageRequest(sort=sort, page_size=2), by_cursor=False)

        assert [row["id"] for row in served] == expected_order(expected, sort, descending=False)
        assert_same_customers({row["id"]: row for row in served}, expected)


@pytest.mark.parametrize("filters", [NO_FILTER, EVERY_PURCHASE], ids=["kept keys", "row path"])
@pytest.mark.parametrize("sort", ["name", "email", "phone"])
def test_latest_values_break_ties_on_the_instant_by_the_greater_transaction_id(filters, sort):
    """Two orders of one buyer at the same instant: the one with the greater id gives the latest
    name, email and phone, and so the buyer's place in those sorts."""
    same_instant = {"PurchaseDate": T0, "Phone": ""}
    model = ReadModel()
    model.upsert(
        [
            transaction(
                1, Name="Ana Lima", Email="ana@example.com", **same_instant | {"Phone": "+1 555 0100"}
            ),
            transaction(2, Name="ana", Email="ANA@example.com", **same_instant | {"Phone": "+1 555 0300"}),
            transaction(3, Name="Bo", Email="bo@example.com", **same_instant | {"Phone": "+1 555 0200"}),
        ]
    )

    served = walk(model, EVERYTHING, filters, PageRequest(sort=sort), by_cursor=True)

    assert [(row["name"], row["email"], row["phone"]) for row in served] == {
        "name": [("Bo", "bo@example.com", "+1 555 0200"), ("ana", "ANA@example.com", "+1 555 0300")],
        "email": [("ana", "ANA@example.com", "+1 555 0300"), ("Bo", "bo@example.com", "+1 555 0200")],
        "phone": [("Bo", "bo@example.com", "+1 555 0200"), ("ana", "ANA@example.com", "+1 555 0300")],
    }[sort]


@pytest.mark.parametrize("filters", [NO_FILTER, EVERY_PURCHASE], ids=["kept keys", "row path"])
@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["Ab", "Ann", "Bea"]),
        ("email", ["a@x.com", "b@x.com", "c@x.com"]),
        ("phone", ["+1 555 0000", "+1 555 0001", "+1 555 0002"]),
    ],
)
def test_a_buyers_place_is_set_by_their_latest_non_empty_value(filters, sort, expected):
    """A blank value in a buyer's latest order does not hide the value before it, and of two orders
    at one instant the greater id wins although it arrived first ("tx9" is greater than "tx10")."""
    later = T0 + timedelta(minutes=1)
    model = ReadModel()
    model.upsert(
        [
            transaction(1, Name="Ann", Email="a@x.com", Phone="+1 555 0001", PurchaseDate=T0),
            transaction(2, Name="", Email="a@x.com", Phone="", PurchaseDate=later),
            transaction(3, Name="Bea", Email="b@x.com", Phone="+1 555 0002", PurchaseDate=T0),
            transaction(9, Name="Ab", Email="c@x.com", Phone="+1 555 0000", PurchaseDate=T0),
            transaction(10, Name="Cy", Email="C@X.COM", Phone="+1 555 0009", PurchaseDate=T0),
        ]
    )

    served = walk(model, EVERYTHING, filters, PageRequest(sort=sort), by_cursor=True)

    assert [row[sort] for row in served] == expected


def changed_rows(data: st.DataObject, held: dict[str, dict[str, Any]], model: ReadModel, count: int) -> None:
    """Random upserts (new orders, orders moved to another buyer or event) and deletes, applied to
    ``model`` and to ``held`` alike."""
    for step in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(0, count + 2))
        if data.draw(st.booleans()):
            model.delete(f"tx{n}", ts=10 + step)
            held.pop(f"tx{n}", None)
        else:
            document = {**data.draw(exact_buyer_documents(n)), "_ts": 10 + step}
            model.upsert([document])
            held[document["id"]] = document


@WALK_SETTINGS
@given(
    rows=exact_buyer_rows(),
    data=st.data(),
    sort=st.sampled_from(sorted(CUSTOMER_SORTS)),
    descending=st.booleans(),
    by_cursor=st.booleans(),
)
def test_a_kept_query_follows_upserts_and_deletes_for_any_filters(rows, data, sort, descending, by_cursor):
    """A query asked once keeps its buyers' keys, run, built rows and row positions; after rows
    change (in its events or others, buyers merging and splitting) it is repaired, and walking it
    serves exactly the independent de-duplication of the rows held now, in order."""
    query = data.draw(queries(rows))
    model = ReadModel()
    model.upsert(rows)
    scope, filters = scope_and_filters(query)
    # One buyer a page: the run's window of built rows (four pages) ends before the last buyers.
    request = PageRequest(sort=sort, descending=descending, page_size=1)
    customers_page(model, scope, filters, request)
    held = {row["id"]: row for row in rows}
    changed_rows(data, held, model, len(rows))
    expected = expected_customers([row for row in held.values() if matches(row, query)])

    served = walk(model, scope, filters, request, by_cursor=by_cursor)

    assert [row["id"] for row in served] == expected_order(expected, sort, descending=descending)
    assert_same_customers({row["id"]: row for row in served}, expected)


@WALK_SETTINGS
@given(rows=exact_buyer_rows(), data=st.data(), built_kept=st.integers(0, 3))
def test_pages_asked_in_any_order_of_sorts_and_indexes_are_each_the_right_slice(rows, data, built_kept):
    """A query keeps the whole rows of a few buyers only: pages asked in any order of sorts,
    directions, sizes and indexes (windows of built rows pushing one another out) each serve the
    buyers of that slice of the independent de-duplication, with their columns."""
    query = data.draw(queries(rows))
    model = ReadModel()
    model.upsert(rows)
    scope, filters = scope_and_filters(query)
    expected = expected_customers([row for row in rows if matches(row, query)])
    customers_query = CustomerQuery(everyone=False, built_kept=built_kept)
    for _ in range(data.draw(st.integers(1, 8))):
        sort = data.draw(st.sampled_from(sorted(CUSTOMER_SORTS)))
        descending, size, index = (
            data.draw(st.booleans()),
            data.draw(st.integers(1, 3)),
            data.draw(st.integers(0, 4)),
        )
        request = PageRequest(sort=sort, descending=descending, page_size=size, page=index)

        served, _ = customers_query.page(
            model, scope, filters, request, everyone_keys=EveryoneKeys(model), query_fingerprint="test"
        )

        wanted = expected_order(expected, sort, descending=descending)[index * size : (index + 1) * size]
        assert served["id"].to_list() == wanted
        assert_same_customers(
            {row["id"]: row for row in served.select(CUSTOMER_COLUMNS).to_dicts()},
            {buyer: expected[buyer] for buyer in wanted},
        )


@pytest.mark.parametrize("repair_limit", [1, 2, 100], ids=["over the limit", "at the limit", "under it"])
def test_a_query_changed_beyond_its_repair_limit_is_computed_again(repair_limit):
    """More changed buyers than the limit: the query forgets its keys, runs and built rows and
    computes them again; at or under it, it repairs them. Either way the pages are right."""
    model = ReadModel()
    held = {n: spender(n, buyer=n % 6, amount=float(n)) for n in range(12)}
    model.upsert(list(held.values()))
    customers_query = CustomerQuery(everyone=False, repair_limit=repair_limit)
    model.on_change(
        lambda changes: customers_query.rows_changed(changes[CUSTOMER_ID].to_list(), touched=True)
    )
    request = PageRequest(sort="totalSpent", descending=True, page_size=2)
    ask = partial(
        customers_query.page,
        model,
        EVERYTHING,
        EVERY_PURCHASE,
        everyone_keys=EveryoneKeys(model),
        query_fingerprint="t",
    )
    ask(request)
    held[12] = spender(12, buyer=1, amount=100.0)  # buyer 1 from the last place to the first
    model.upsert([held[12]])
    model.delete("tx0", ts=5)  # buyer 0 spends less
    del held[0]

    pages = [ask(replace(request, page=index))[0].select(CUSTOMER_COLUMNS) for index in range(4)]
    served = [row for page in pages for row in page.to_dicts()]

    expected = expected_customers(list(held.values()))
    assert [row["id"] for row in served] == expected_order(expected, "totalSpent", descending=True)
    assert_same_customers({row["id"]: row for row in served}, expected)
