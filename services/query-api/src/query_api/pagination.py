"""Server-side pages over a frame: a page index or an opaque keyset cursor, sorted stably.

Rows are ordered by the sort column (nulls last in both directions), then by the row's id, so
every order is total. A cursor holds the last row's sort value and id: the next page starts
strictly after it, so walking by cursor returns each row once even while other rows are added,
changed or removed (a row whose sort value changes may move past the cursor or before it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import polars as pl

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_PAGE_SIZE: Final = 500
DEFAULT_PAGE_SIZE: Final = 50


class CursorError(ValueError):
    """A cursor that is malformed or belongs to another query."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PageRequest:
    """Which page: ``cursor`` (from a previous page) or ``page`` (0-based index); sorted by ``sort``."""

    sort: str
    descending: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    page: int = 0
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
        if self.page < 0:
            raise ValueError("page must be 0 or more")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows, the number of rows matching, and where the next page starts."""

    rows: pl.DataFrame
    total: int
    page: int | None
    next_cursor: str | None


def fingerprint(*parts: object) -> str:
    """A short digest of what a cursor was made for (filters, scope), so it is not reused elsewhere."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def paginate(
    frame: pl.DataFrame,
    request: PageRequest,
    *,
    sortable: Mapping[str, str],
    key: str,
    query_fingerprint: str,
) -> Page:
    """The requested page of ``frame``; ``sortable`` maps the API's sort names to columns."""
    column = sortable.get(request.sort)
    if column is None:
        raise ValueError(f"sort must be one of {', '.join(sorted(sortable))}")
    value = pl.col(column)
    ordered = frame.lazy()
    page_index: int | None = request.page
    if request.cursor is not None:
        after = _decode(request.cursor, request=request, query_fingerprint=query_fingerprint)
        ordered = ordered.filter(_after(value, pl.col(key), after, descending=request.descending))
        page_index = None
    sorted_rows = ordered.sort(
        [value.is_null(), value, pl.col(key)], descending=[False, request.descending, False]
    )
    offset = 0 if request.cursor is not None else request.page * request.page_size
    window = sorted_rows.slice(offset, request.page_size + 1).collect()
    rows = window.head(request.page_size)
    more = window.height > request.page_size
    next_cursor = None
    if more:
        last = rows.row(rows.height - 1, named=True)
        next_cursor = _encode(request, last[column], last[key], query_fingerprint)
    return Page(rows=rows, total=frame.height, page=page_index, next_cursor=next_cursor)


def _after(value: pl.Expr, key: pl.Expr, last: dict[str, Any], *, descending: bool) -> pl.Expr:
    last_id = pl.lit(last["id"])
    if last["null"]:
        return value.is_null() & (key > last_id)
    last_value = pl.lit(last["value"])
    beyond = value < last_value if descending else value > last_value
    return value.is_null() | beyond | ((value == last_value) & (key > last_id))


def _encode(request: PageRequest, value: Any, row_id: Any, query_fingerprint: str) -> str:
    body = {
        "sort": request.sort,
        "desc": request.descending,
        "null": value is None,
        "value": value,
        "id": row_id,
        "query": query_fingerprint,
    }
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str, *, request: PageRequest, query_fingerprint: str) -> dict[str, Any]:
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise CursorError("cursor is not one this API issued") from None
    if not isinstance(body, dict) or set(body) != {"sort", "desc", "null", "value", "id", "query"}:
        raise CursorError("cursor is not one this API issued")
    if (body["sort"], body["desc"], body["query"]) != (request.sort, request.descending, query_fingerprint):
        raise CursorError("cursor belongs to another sort or filter; start again without it")
    return body
