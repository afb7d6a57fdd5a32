"""Property: keyset paging never skips a row, whatever the page sizes and changes in between."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.opentickets.paging import TransactionIndex
from devstack.scenario import Scenario

steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=60),  # page size
        st.integers(min_value=0, max_value=240),  # minutes to advance after the page
        st.integers(min_value=0, max_value=3),  # forced refunds
        st.integers(min_value=0, max_value=3),  # forced scans
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=50), plan=steps)
def test_every_row_is_seen_and_its_last_version_is_current(
    seed: int, plan: list[tuple[int, int, int, int]]
) -> None:
    scenario = Scenario(seed=seed, events=3, orders=150, sales_per_hour=20)
    index = TransactionIndex(scenario)
    initial = {row["id"] for row in scenario.transactions()}
    changed: set[str] = set()
    seen: dict[str, dict] = {}
    cursor: str | None = None
    for step in range(10_000):
        limit, minutes, refunds, scans = plan[step % len(plan)]
        page = index.page(limit=limit, updated_since=None, event_id=None, cursor=cursor)
        keys = [(row["updatedAt"], row["id"]) for row in page.rows]
        assert keys == sorted(keys)
        seen.update((row["id"], row) for row in page.rows)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        if step < len(plan):
            changes = scenario.advance(minutes=minutes, refunds=refunds, scans=scans)
            index.apply(changes)
            changed.update(changes.changed_ids)
    assert set(seen) == initial | changed
    assert seen == {row["id"]: row for row in scenario.transactions()}
