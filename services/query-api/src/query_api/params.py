"""Query parameters of the data endpoints: parsed, bounded, and refused with the parameter named.

Every list parameter takes repeated values (``?eventId=a&eventId=b``) or commas (``?eventId=a,b``).
Unknown parameters are refused, so a typo never silently widens an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, TypeVar, get_args

from otcommon.http import InvalidParameterError, query_parameter, reject_unknown_parameters
from otcommon.schemas import utc_within_years
from query_api.analytics import Breakdown
from query_api.filters import DateMode, TransactionFilter, source_bucket_of
from query_api.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest
from query_api.timezones import check_time_zone

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

    from query_api.models import Granularity

FILTER_PARAMETERS: Final = frozenset(
    {
        "eventId",
        "from",
        "to",
        "dateMode",
        "ticketTypes",
        "source",
        "refunded",
        "disputed",
        "valid",
        "referralCode",
        "q",
    }
)
ANALYTICS_PARAMETERS: Final = FILTER_PARAMETERS | {"tz", "include", "granularity"}
PAGE_PARAMETERS: Final = frozenset({"sort", "order", "pageSize", "page", "cursor"})
TABLE_PARAMETERS: Final = FILTER_PARAMETERS | PAGE_PARAMETERS

MAX_TEXT_LENGTH: Final = 200
"""Longest search text (q)."""
MAX_VALUE_LENGTH: Final = 100
"""Longest value of a list parameter (an event id, a ticket type, a referral code)."""

MAX_ZONE_LENGTH: Final = 64
"""Longest time zone name (the longest IANA name has 32 characters)."""
MAX_CURSOR_LENGTH: Final = 2048
MAX_PAGE_INDEX: Final = 1_000_000
EARLIEST_YEAR, LATEST_YEAR = 1970, 2999

ParsedT = TypeVar("ParsedT")
ChoiceT = TypeVar("ChoiceT", bound=str)

GRANULARITIES: Final[tuple[Granularity, ...]] = ("hour", "day", "week")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The bounds a request must stay within (settings choose them)."""

    max_list_values: int = 100
    max_date_span: timedelta = timedelta(days=3660)
    max_hourly_span: timedelta = timedelta(days=93)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticsQuery:
    """What ``/api/analytics`` was asked."""

    filters: TransactionFilter
    time_zone: str
    include: tuple[Breakdown, ...]
    granularity: Granularity


def analytics_query(request: web.Request, limits: Limits) -> AnalyticsQuery:
    """The filters, zone and breakdowns of an analytics request."""
    reject_unknown_parameters(request, ANALYTICS_PARAMETERS)
    filters = transaction_filter(request, limits)
    breakdown_names = tuple(breakdown.value for breakdown in Breakdown)
    include = tuple(
        dict.fromkeys(
            Breakdown(name) for name in _list(request, "include", limits, parse=_one_of(breakdown_names))
        )
    )
    granularity: Granularity = query_parameter(request, "granularity", _one_of(GRANULARITIES)) or "day"
    if Breakdown.TIME_SERIES in include and granularity == "hour":
        _check_hourly_span(filters, limits)
    return AnalyticsQuery(
        filters=filters,
        time_zone=query_parameter(request, "tz", _time_zone) or "UTC",
        include=include,
        granularity=granularity,
    )


def table_query(
    request: web.Request, limits: Limits, *, default_sort: str, sortable: frozenset[str]
) -> tuple[TransactionFilter, PageRequest]:
    """The filters and the page of a table request."""
    reject_unknown_parameters(request, TABLE_PARAMETERS)
    filters = transaction_filter(request, limits)
    sort = query_parameter(request, "sort", _one_of(tuple(sorted(sortable)))) or default_sort
    order = query_parameter(request, "order", _one_of(("asc", "desc"))) or "asc"
    page_size = query_parameter(request, "pageSize", _bounded_int(1, MAX_PAGE_SIZE)) or DEFAULT_PAGE_SIZE
    page = query_parameter(request, "page", _bounded_int(0, MAX_PAGE_INDEX)) or 0
    cursor = query_parameter(request, "cursor", _text(MAX_CURSOR_LENGTH))
    if cursor is not None and page:
        raise InvalidParameterError("cursor", "give either cursor or page, not both")
    return filters, PageRequest(
        sort=sort, descending=order == "desc", page_size=page_size, page=page, cursor=cursor
    )


def no_parameters(request: web.Request) -> None:
    """Refuse any query parameter (routes that take none)."""
    reject_unknown_parameters(request, frozenset())


def transaction_filter(request: web.Request, limits: Limits) -> TransactionFilter:
    """The filters of SPEC section 3 from the query string."""
    date_from = query_parameter(request, "from", parse_instant)
    date_to = query_parameter(request, "to", parse_instant)
    if date_from is not None and date_to is not None:
        if date_to < date_from:
            # Equal bounds are an empty range (from is inclusive, to exclusive), not a mistake.
            raise InvalidParameterError("to", "to must not be earlier than from")
        if date_to - date_from > limits.max_date_span:
            raise InvalidParameterError("to", f"from..to may span at most {limits.max_date_span.days} days")
    date_mode: DateMode = query_parameter(request, "dateMode", _one_of(get_args(DateMode))) or "purchase"
    return TransactionFilter.of(
        event_ids=_list(request, "eventId", limits, parse=_text(MAX_VALUE_LENGTH)),
        date_from=date_from,
        date_to=date_to,
        date_mode=date_mode,
        ticket_types=_list(request, "ticketTypes", limits, parse=_text(MAX_VALUE_LENGTH)),
        sources=_list(request, "source", limits, parse=_source),
        refunded=query_parameter(request, "refunded", parse_flag),
        disputed=query_parameter(request, "disputed", parse_flag),
        valid=query_parameter(request, "valid", parse_flag),
        referral_codes=_list(request, "referralCode", limits, parse=_text(MAX_VALUE_LENGTH)),
        search=query_parameter(request, "q", _text(MAX_TEXT_LENGTH)),
    )


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date or timestamp; without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("expected an ISO 8601 date or timestamp, e.g. 2026-05-01T00:00:00Z") from None
    return utc_within_years(parsed, EARLIEST_YEAR, LATEST_YEAR)


def parse_flag(value: str) -> bool:
    """``true`` or ``false``."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise ValueError("must be true or false")


def _time_zone(value: str) -> str:
    if len(value) > MAX_ZONE_LENGTH:
        raise ValueError(f"at most {MAX_ZONE_LENGTH} characters")
    return check_time_zone(value)


def _source(value: str) -> str:
    source_bucket_of(value)  # refuses anything but online, boxOffice, other
    return value


def _check_hourly_span(filters: TransactionFilter, limits: Limits) -> None:
    days = limits.max_hourly_span.days
    if filters.date_from is None or filters.date_to is None:
        raise InvalidParameterError(
            "granularity", f"an hourly time series needs from and to, at most {days} days apart"
        )
    if filters.date_to - filters.date_from > limits.max_hourly_span:
        raise InvalidParameterError("granularity", f"an hourly time series may span at most {days} days")


def _list(
    request: web.Request, name: str, limits: Limits, *, parse: Callable[[str], ParsedT]
) -> list[ParsedT]:
    values = [part.strip() for value in request.query.getall(name, []) for part in value.split(",")]
    values = [value for value in values if value]
    if len(values) > limits.max_list_values:
        raise InvalidParameterError(name, f"{name} may hold at most {limits.max_list_values} values")
    try:
        return [parse(value) for value in values]
    except ValueError as error:
        raise InvalidParameterError(name, f"{name}: {error}") from error


def _text(max_length: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    return parse


def _one_of(choices: tuple[ChoiceT, ...]) -> Callable[[str], ChoiceT]:
    def parse(value: str) -> ChoiceT:
        for choice in choices:
            if value == choice:
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not value.isascii() or not value.isdigit():
            raise ValueError("must be a whole number")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse
