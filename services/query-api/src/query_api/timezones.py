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
from typing import Final
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


def _offset_minutes_of(quarters: pl.Expr, time_zone: str) -> pl.Expr:
    """The zone's UTC offset (minutes) at the start of each quarter-hour, by the engine's zone rules."""
    utc = pl.from_epoch(quarters * QUARTER_HOUR_SECONDS, time_unit="s")
    local = utc.dt.replace_time_zone("UTC").dt.convert_time_zone(time_zone).dt.replace_time_zone(None)
    return (local - utc).dt.total_minutes().cast(pl.Int32)


@lru_cache(maxsize=256)
def _block_offsets(time_zone: str, block: int) -> pl.Series:
    """Offsets (minutes, Int16) of the quarter-hours of one block: a zone's rules never change in a run."""
    quarters = pl.int_range(block * BLOCK_QUARTERS, (block + 1) * BLOCK_QUARTERS, dtype=pl.Int64)
    return pl.select(_offset_minutes_of(quarters, time_zone).cast(pl.Int16)).to_series()


@dataclass(frozen=True, slots=True)
class LocalClock:
    """A zone's offset at each row's ``PURCHASE_QUARTER``, as an expression, and the local keys from it."""

    offset_minutes: pl.Expr

    @classmethod
    def of(cls, time_zone: str, quarters: pl.Series) -> LocalClock:
        """The clock for rows whose quarter-hours are ``quarters`` (only the least and greatest are read)."""
        low, high = quarters.min(), quarters.max()
        if not isinstance(low, int) or not isinstance(high, int):
            return cls(pl.lit(0, dtype=pl.Int32))
        first, last = low // BLOCK_QUARTERS, high // BLOCK_QUARTERS
        if last - first >= MOST_BLOCKS:
            return cls(_offset_minutes_of(pl.col(PURCHASE_QUARTER), time_zone))
        blocks = [_block_offsets(time_zone, block) for block in range(first, last + 1)]
        table = pl.concat(blocks) if len(blocks) > 1 else blocks[0]
        if table.min() == table.max():
            return cls(pl.lit(table[0], dtype=pl.Int32))
        position = pl.col(PURCHASE_QUARTER) - first * BLOCK_QUARTERS
        return cls(pl.lit(table).gather(position).cast(pl.Int32))

    def local_seconds(self) -> pl.Expr:
        """The local wall-clock start of the row's quarter-hour, as seconds since the local epoch."""
        return pl.col(PURCHASE_QUARTER) * QUARTER_HOUR_SECONDS + self.offset_minutes * 60

    def local_hour(self) -> pl.Expr:
        """Local hours since the local epoch: with the offset, names one local hour."""
        return self.local_seconds() // _SECONDS_PER_HOUR

    def local_day(self) -> pl.Expr:
        """Local days since the local epoch (1970-01-01)."""
        return self.local_seconds() // _SECONDS_PER_DAY

    def local_monday(self) -> pl.Expr:
        """The local day of the Monday starting the row's local week."""
        day = self.local_day()
        return day - (day + _THURSDAY) % 7

    def hour_of_day(self) -> pl.Expr:
        """The local hour of the day, 0-23."""
        return self.local_hour() % 24

    def weekday(self) -> pl.Expr:
        """The local weekday, 0 for Monday to 6 for Sunday."""
        return (self.local_day() + _THURSDAY) % 7
