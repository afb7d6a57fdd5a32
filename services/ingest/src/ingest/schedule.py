"""NCRONTAB schedules: six fields, seconds first (``0 0 * * * *`` is every hour on the hour)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

NCRONTAB_FIELDS = 6


class InvalidScheduleError(ValueError):
    """The expression is not a six-field NCRONTAB expression."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated NCRONTAB expression."""

    expression: str

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """Validate ``expression``: exactly six fields (second minute hour day month weekday)."""
        fields = expression.split()
        if len(fields) != NCRONTAB_FIELDS:
            raise InvalidScheduleError(
                f"{expression!r} has {len(fields)} fields; NCRONTAB needs 6: "
                "second minute hour day month day-of-week (e.g. '0 0 * * * *' for hourly)"
            )
        normalized = " ".join(fields)
        if not croniter.is_valid(normalized, second_at_beginning=True):
            raise InvalidScheduleError(f"{expression!r} is not a valid NCRONTAB expression")
        return cls(normalized)

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment`` (UTC)."""
        iterator = croniter(self.expression, moment.astimezone(UTC), second_at_beginning=True)
        result: datetime = iterator.get_next(datetime)
        return result.astimezone(UTC)
