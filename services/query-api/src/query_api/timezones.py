"""Local time of UTC quarter-hours: counts are grouped by UTC quarter-hour first, then each distinct
quarter-hour is converted once (SPEC section 8).

Every offset in use since 1970 is a whole number of quarter-hours (+05:30, +05:45, -09:30), so a
UTC quarter-hour lies within one local hour and one local day, with daylight saving or without.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from query_api.columns import PURCHASE_QUARTER, QUARTER_HOUR_SECONDS

LOCAL_TIME = "_local"
"""The wall-clock time (naive) of the quarter-hour's start in the requested zone."""
OFFSET_MINUTES = "_offsetMinutes"
"""The zone's UTC offset at that quarter-hour, in minutes."""

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


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


def with_local_time(quarters: pl.LazyFrame, time_zone: str) -> pl.LazyFrame:
    """Add the local wall-clock start and UTC offset of each row's ``PURCHASE_QUARTER``."""
    utc = pl.from_epoch(pl.col(PURCHASE_QUARTER) * QUARTER_HOUR_SECONDS, time_unit="s")
    local = utc.dt.replace_time_zone("UTC").dt.convert_time_zone(time_zone).dt.replace_time_zone(None)
    return quarters.with_columns(local.alias(LOCAL_TIME)).with_columns(
        ((pl.col(LOCAL_TIME) - utc).dt.total_minutes()).alias(OFFSET_MINUTES)
    )
