"""Answers from the per-event partials equal the row-by-row answers, also after rows change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from reference import BREAKDOWN_KEYS, Query, grouped, matches, metrics, time_series, top_connected_account
from test_properties import (
    EVENTS,
    SETTINGS,
    TIME_ZONES,
    assert_close,
    assert_groups_equal,
    breakdown_dict,
    documents,
    row_sets,
    subsets,
)

from query_api.analytics import Breakdown, analyze, report_json
from query_api.filters import TransactionFilter
from query_api.readmodel import ReadModel
from query_api.rollups import answers_from_partials
from query_api.scope import EventScope

EVERY_PURCHASE = TransactionFilter(date_from=datetime(1970, 1, 1, tzinfo=UTC))
"""Selects every row, but is not an events-only filter: answered row by row."""


def answer(model: ReadModel, scope: EventScope, filters: TransactionFilter, time_zone: str, granularity: str):
    report = analyze(
        model, scope, filters, time_zone=time_zone, include=list(Breakdown), granularity=granularity
    )  # type: ignore[arg-type]
    return report_json(report)


def assert_same_answer(actual: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for key, value in expected.items():
            assert_same_answer(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        # Breakdown rows are ordered by gross; equal sums may differ in the last bit, so compare by key.
        assert len(actual) == len(expected), where
        if expected and isinstance(expected[0], dict) and "key" in expected[0]:
            actual = sorted(actual, key=lambda row: str(row["key"]))
            expected = sorted(expected, key=lambda row: str(row["key"]))
        for index, (got, wanted) in enumerate(zip(actual, expected, strict=True)):
            assert_same_answer(got, wanted, f"{where}[{index}]")
    else:
        assert_close(actual, expected, where)


def test_only_whole_event_filters_are_answered_from_partials():
    assert answers_from_partials(TransactionFilter())
    assert answers_from_partials(TransactionFilter.of(event_ids=["rome"], date_mode="redemption"))
    assert not answers_from_partials(EVERY_PURCHASE)
    assert not answers_from_partials(TransactionFilter.of(refunded=False))
    assert not answers_from_partials(TransactionFilter.of(search="ana"))


@SETTINGS
@given(
    rows=row_sets(),
    time_zone=st.sampled_from(TIME_ZONES),
    granularity=st.sampled_from(("hour", "day", "week")),
    scope=st.none() | subsets(EVENTS),
)
def test_partials_equal_the_row_by_row_answer(rows, time_zone, granularity, scope):
    model = ReadModel()
    model.upsert(rows)
    seen = EventScope.everything() if scope is None else EventScope.only(scope)
    from_partials = answer(model, seen, TransactionFilter(), time_zone, granularity)
    row_by_row = answer(model, seen, EVERY_PURCHASE, time_zone, granularity)
    assert_same_answer(from_partials, row_by_row)


@st.composite
def changes(draw: st.DrawFn, count: int) -> list[tuple[str, Any]]:
    """Upserts of new versions (which may move a row to another event), new rows and deletes."""
    steps: list[tuple[str, Any]] = []
    for step in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("change", "add", "delete")))
        n = draw(st.integers(0, max(count - 1, 0))) if kind != "add" else 100 + step
        if kind == "delete":
            steps.append(("delete", (f"tx{n}", 10 + step)))
        else:
            steps.append(("upsert", {**draw(documents(n)), "_ts": 10 + step}))
    return steps


@SETTINGS
@given(
    rows=row_sets(),
    data=st.data(),
    time_zone=st.sampled_from(TIME_ZONES),
    scope=st.none() | subsets(EVENTS),
    event_ids=subsets(EVENTS),
)
def test_partials_follow_upserts_and_deletes(rows, data, time_zone, scope, event_ids):
    model = ReadModel()
    model.upsert(rows)
    seen = EventScope.everything() if scope is None else EventScope.only(scope)
    filters = TransactionFilter.of(event_ids=event_ids)
    answer(model, seen, filters, time_zone, "day")  # the partials are built here, then rows change
    held = {row["id"]: row for row in rows}
    for kind, value in data.draw(changes(len(rows))):
        if kind == "delete":
            document_id, ts = value
            model.delete(document_id, ts=ts)
            held.pop(document_id, None)
        else:
            model.upsert([value])
            held[value["id"]] = value
    got = answer(model, seen, filters, time_zone, "hour")
    query = Query(scope=None if scope is None else frozenset(scope), event_ids=event_ids)
    selected = [row for row in held.values() if matches(row, query)]
    for name, expected in metrics(selected, time_zone).items():
        assert_close(got[name], expected, name)
    for name, keys_of in BREAKDOWN_KEYS.items():
        assert_groups_equal(breakdown_dict(got[name]), grouped(selected, keys_of), name)
    top = got["routing"]["topConnectedAccount"]
    assert (top and top["accountId"]) == top_connected_account(selected)
    expected_series = time_series(selected, granularity="hour", time_zone=time_zone)
    assert [point["bucket"] for point in got["timeSeries"]] == [point[0] for point in expected_series]
    assert [point["ordersCount"] for point in got["timeSeries"]] == [point[1] for point in expected_series]
