"""Local time of purchases from their UTC quarter-hour (SPEC section 8: no row's time is converted).

Every offset in use since 1970 is a whole number of quarter-hours (+05:30, +05:45, -09:30), so a
UTC quarter-hour lies within one local hour and one local day, with daylight saving or without.
The zone's offset is therefore a function of the quarter-hour alone: a table of offsets per
quarter-hour, built once per zone and stretch of time, turns each row's ``PURCHASE_QUARTER`` into
its local hour, weekday, day or week with a lookup and integer arithmetic. Rows are then grouped
by those few local keys (168 hour-of-week slots for the peaks), never by the thousands of distinct
quarter-hours first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from query_api.columns import PURCHASE_QUARTER, QUARTER_HOUR_SECONDS

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

BLOCK_QUARTERS: Final = 16_384
"""Quarter-hours per block of the offset tables (about 171 days; 32 KB a block)."""

MOST_BLOCKS: Final = 96
"""Rows spanning more blocks than this (about 45 years) have each time converted instead."""

_SECONDS_PER_HOUR: Final = 3600
_SECONDS_PER_DAY: Final = 86_400
_THURSDAY: Final = 3
"""1970-01-01 was a Thursday: (days since the epoch + 3) % 7 is 0 on Mondays."""


@lru_cache(maxsize=512)
def check_time_zone(name: str) -> str:
    """The IANA zone name if both the standard library and the engine know it; ValueError otherwise."""
    try:
        ZoneInfo(name)
        pl.select(pl.lit(0).cast(pl.Datetime("ms", "UTC")).dt.convert_time_zone(name))
    # OSError: zoneinfo opens the name as a file, so a folder ("America") or an over-long name fails there.
    except (ZoneInfoNotFoundError, ValueError, OSError, pl.exceptions.PolarsError):
        raise ValueError("must be an IANA time zone such as Europe/Berlin") from None
    return name


LocalKey = Literal["slot", "hour", "day", "week"]
"""What a quarter-hour is mapped to in local time (``local_key``)."""

HOUR_KEY_OFFSET_SPAN: Final = 4096
"""An ``hour`` key is ``local hour * 4096 + offset minutes + 2048``: offsets lie within +-14 hours."""


def _offset_minutes_of(quarters: pl.Expr, time_zone: str) -> pl.Expr:
    """The zone's UTC offset (minutes) at the start of each quarter-hour, by the engine's zone rules."""
    utc = pl.from_epoch(quarters * QUARTER_HOUR_SECONDS, time_unit="s")
    local = utc.dt.replace_time_zone("UTC").dt.convert_time_zone(time_zone).dt.replace_time_zone(None)
    return (local - utc).dt.total_minutes()


def local_key(kind: LocalKey, quarters: pl.Expr, time_zone: str) -> pl.Expr:
    """The local key of each UTC quarter-hour in ``time_zone``.

    - ``slot``: the local hour of the week, ``weekday * 24 + hour`` (Monday 0; 0-167);
    - ``hour``: the local hour with the offset it was lived at (``HOUR_KEY_OFFSET_SPAN``), so the hour
      repeated when clocks go back is two keys;
    - ``day``: local days since 1970-01-01; ``week``: the local day of the week's Monday.
    """
    offset = _offset_minutes_of(quarters, time_zone)
    local_seconds = quarters * QUARTER_HOUR_SECONDS + offset * 60
    day = local_seconds // _SECONDS_PER_DAY
    if kind == "slot":
        hour = local_seconds // _SECONDS_PER_HOUR % 24
        return ((day + _THURSDAY) % 7 * 24 + hour).cast(pl.UInt8)
    if kind == "hour":
        return local_seconds // _SECONDS_PER_HOUR * HOUR_KEY_OFFSET_SPAN + offset + HOUR_KEY_OFFSET_SPAN // 2
    if kind == "day":
        return day.cast(pl.Int32)
    return (day - (day + _THURSDAY) % 7).cast(pl.Int32)


def hour_key_parts(key: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The local hour (hours since the local epoch) and the offset (minutes) of an ``hour`` key."""
    return key // HOUR_KEY_OFFSET_SPAN, key % HOUR_KEY_OFFSET_SPAN - HOUR_KEY_OFFSET_SPAN // 2


@lru_cache(maxsize=128)
def _block_keys(time_zone: str, kind: LocalKey, block: int) -> pl.Series:
    """The local keys of one block's quarter-hours: a zone's rules do not change while the process runs."""
    quarters = pl.int_range(block * BLOCK_QUARTERS, (block + 1) * BLOCK_QUARTERS, dtype=pl.Int64)
    return pl.select(local_key(kind, quarters, time_zone)).to_series()


@dataclass(frozen=True, slots=True)
class LocalClock:
    """Local keys of each row's ``PURCHASE_QUARTER`` in one zone: looked up in tables of the blocks the
    rows span, or (rows spanning more than ``MOST_BLOCKS``) computed row by row."""

    time_zone: str
    blocks: range | None

    @classmethod
    def of(cls, time_zone: str, quarters: pl.Series) -> LocalClock:
        """The clock for rows whose quarter-hours are ``quarters`` (only the least and greatest are read)."""
        low, high = quarters.min(), quarters.max()
        if not isinstance(low, int) or not isinstance(high, int):
            return cls(time_zone, None)
        first, last = low // BLOCK_QUARTERS, high // BLOCK_QUARTERS
        return cls(time_zone, range(first, last + 1) if last - first < MOST_BLOCKS else None)

    def key(self, kind: LocalKey) -> pl.Expr:
        """Each row's local key of this kind (``local_key``)."""
        if self.blocks is None:
            return local_key(kind, pl.col(PURCHASE_QUARTER), self.time_zone)
        tables = [_block_keys(self.time_zone, kind, block) for block in self.blocks]
        table = pl.concat(tables) if len(tables) > 1 else tables[0]
        return pl.lit(table).gather(pl.col(PURCHASE_QUARTER) - self.blocks.start * BLOCK_QUARTERS)
