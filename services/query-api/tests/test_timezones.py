"""Local keys of UTC quarter-hours equal the standard library's conversion, in tables and row by row."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from query_api.columns import PURCHASE_QUARTER, QUARTER_HOUR_SECONDS
from query_api.timezones import BLOCK_QUARTERS, MOST_BLOCKS, LocalClock, hour_key_parts

# Daylight saving of an hour, of half an hour (Lord Howe), none; offsets of :30 and :45; negative ones.
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_QUARTER = int((datetime(1971, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) // QUARTER_HOUR_SECONDS
LAST_QUARTER = int((datetime(2099, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) // QUARTER_HOUR_SECONDS
# Quarter-hours around daylight-saving changes are drawn often: those are where a table could be wrong.
CHANGES = tuple(
    int((datetime(year, month, day, tzinfo=UTC) - EPOCH).total_seconds()) // QUARTER_HOUR_SECONDS
    for year, month, day in ((2026, 3, 8), (2026, 4, 4), (2026, 10, 3), (2026, 11, 1), (2026, 3, 29))
)


def quarters() -> st.SearchStrategy[int]:
    near_a_change = st.builds(
        lambda start, step: start + step, st.sampled_from(CHANGES), st.integers(-96, 96)
    )
    return near_a_change | st.integers(FIRST_QUARTER, LAST_QUARTER)


def expected_keys(quarter: int, zone: str) -> dict[str, int]:
    """The keys computed with zoneinfo, one instant at a time."""
    local = (EPOCH + timedelta(seconds=quarter * QUARTER_HOUR_SECONDS)).astimezone(ZoneInfo(zone))
    offset = local.utcoffset()
    assert offset is not None
    wall = local.replace(tzinfo=None)
    day = (wall.date() - date(1970, 1, 1)).days
    return {
        "slot": wall.weekday() * 24 + wall.hour,
        "hour": int((wall.replace(tzinfo=UTC) - EPOCH).total_seconds()) // 3600,
        "offset": int(offset.total_seconds()) // 60,
        "day": day,
        "week": day - wall.weekday(),
    }


def keys_of(clock: LocalClock, rows: pl.DataFrame) -> list[dict[str, int]]:
    local_hour, offset = hour_key_parts(clock.key("hour"))
    return rows.select(
        clock.key("slot").cast(pl.Int64).alias("slot"),
        local_hour.alias("hour"),
        offset.alias("offset"),
        clock.key("day").cast(pl.Int64).alias("day"),
        clock.key("week").cast(pl.Int64).alias("week"),
    ).to_dicts()


@st.composite
def nearby(draw: st.DrawFn) -> list[int]:
    """Quarter-hours within a few blocks of one another, some of them near a daylight-saving change."""
    centre = draw(quarters())
    steps = st.integers(-3 * BLOCK_QUARTERS, 3 * BLOCK_QUARTERS) | st.integers(-200, 200)
    return [centre, *(centre + step for step in draw(st.lists(steps, max_size=30)))]


@settings(max_examples=60, deadline=None)
@given(zone=st.sampled_from(ZONES), picked=nearby(), spread=st.booleans())
def test_local_keys_equal_the_standard_library(zone, picked, spread):
    # A quarter-hour decades away spreads the rows over more blocks than a table covers: row by row.
    far = [FIRST_QUARTER + 7, LAST_QUARTER - 3] if spread else []
    rows = pl.DataFrame({PURCHASE_QUARTER: [*picked, *far]}, schema={PURCHASE_QUARTER: pl.Int64})
    clock = LocalClock.of(zone, rows[PURCHASE_QUARTER])
    assert (clock.blocks is None) == spread
    assert keys_of(clock, rows) == [expected_keys(quarter, zone) for quarter in rows[PURCHASE_QUARTER]]


def test_a_table_covers_every_block_its_rows_span():
    first = CHANGES[0] // BLOCK_QUARTERS
    spanned = [first * BLOCK_QUARTERS, CHANGES[0], (first + MOST_BLOCKS - 1) * BLOCK_QUARTERS + 5]
    rows = pl.DataFrame({PURCHASE_QUARTER: spanned})
    clock = LocalClock.of("America/New_York", rows[PURCHASE_QUARTER])
    assert clock.blocks == range(first, first + MOST_BLOCKS)
    expected = [expected_keys(quarter, "America/New_York") for quarter in spanned]
    assert keys_of(clock, rows) == expected


def test_no_rows_need_no_table():
    empty = pl.DataFrame({PURCHASE_QUARTER: []}, schema={PURCHASE_QUARTER: pl.Int64})
    clock = LocalClock.of("Asia/Kolkata", empty[PURCHASE_QUARTER])
    assert keys_of(clock, empty) == []
