"""Server-side pages over a frame: a page index or an opaque keyset cursor, sorted stably.

Rows are ordered by the sort column (nulls last in both directions), then by the row's id, so
every order is total. A cursor holds the last row's sort value and id: the next page starts
strictly after it, so walking by cursor returns each row once even while other rows are added,
changed or removed (a row whose sort value changes may move past the cursor or before it).

Nothing sorts every matching row: a page is cut from a ``SortedRun``, the first rows of the
order (from the start, or after a cursor) found with a bottom-k selection. A caller that keeps
the run of a query answers the next pages of the same rows from it.
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
RUN_LENGTH: Final = 1_000
"""Rows selected at least per run: a walk of 50-row pages selects once every 20 pages."""


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
class SortedRun:
    """The first rows of one order of one set of rows: from the start, or after a cursor.

    ``complete`` when it reaches the end of the order. Valid only for the rows it was cut from.
    """

    column: str
    descending: bool
    after: Mapping[str, Any] | None
    rows: pl.DataFrame
    complete: bool


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows, the number of rows matching, where the next page starts, and its run."""

    rows: pl.DataFrame
    total: int
    page: int | None
    next_cursor: str | None
    run: SortedRun | None = None


def fingerprint(*parts: object) -> str:
    """A short digest of what a cursor was made for (filters, scope), so it is not reused elsewhere."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def sort_column(sortable: Mapping[str, str], request: PageRequest) -> str:
    """The column a request sorts by; ValueError naming the choices otherwise."""
    column = sortable.get(request.sort)
    if column is None:
        raise ValueError(f"sort must be one of {', '.join(sorted(sortable))}")
    return column


def paginate(
    frame: pl.DataFrame,
    request: PageRequest,
    *,
    sortable: Mapping[str, str],
    key: str,
    query_fingerprint: str,
    run: SortedRun | None = None,
) -> Page:
    """The requested page of ``frame``; ``sortable`` maps the API's sort names to columns.

    ``run`` is the run of an earlier page over the same ``frame``; the page carries the run it
    was cut from, for the next one.
    """
    column = sort_column(sortable, request)
    after = None
    page_index: int | None = request.page
    if request.cursor is not None:
        after = _decode(request.cursor, request=request, query_fingerprint=query_fingerprint)
        page_index = None
    offset = 0 if after is not None else request.page * request.page_size
    wanted = offset + request.page_size + 1
    if offset >= frame.height:  # past the last row: nothing to select
        return Page(rows=frame.clear(), total=frame.height, page=page_index, next_cursor=None, run=run)
    start = _start_in(run, column=column, descending=request.descending, after=after, key=key)
    if run is None or start is None or not (run.complete or start + wanted <= run.rows.height):
        run = _select_run(frame, column, key, descending=request.descending, after=after, wanted=wanted)
        start = 0
    window = run.rows.slice(start + offset, request.page_size + 1)
    rows = window.head(request.page_size)
    next_cursor = None
    if window.height > request.page_size:
        last = rows.row(rows.height - 1, named=True)
        next_cursor = _encode(request, last[column], last[key], query_fingerprint)
    return Page(rows=rows, total=frame.height, page=page_index, next_cursor=next_cursor, run=run)


def _order(column: str, key: str, *, descending: bool) -> tuple[list[pl.Expr], list[bool]]:
    value = pl.col(column)
    return [value.is_null(), value, pl.col(key)], [False, descending, False]


def _select_run(
    frame: pl.DataFrame,
    column: str,
    key: str,
    *,
    descending: bool,
    after: Mapping[str, Any] | None,
    wanted: int,
) -> SortedRun:
    """The first ``wanted`` rows (at least ``RUN_LENGTH``) of the order, after the cursor if any."""
    length = max(wanted, RUN_LENGTH)
    candidates = frame.lazy()
    if after is not None:
        after_cursor = _after(
            pl.col(column), pl.col(key), after, descending=descending, key_type=frame.schema[key]
        )
        candidates = candidates.filter(after_cursor)
    by, reverse = _order(column, key, descending=descending)
    # bottom_k finds the first rows without sorting the rest; only those are then sorted.
    rows = candidates.bottom_k(length, by=by, reverse=reverse).sort(by, descending=reverse).collect()
    return SortedRun(column, descending, after, rows, complete=rows.height < length)


def repaired(run: SortedRun, frame: pl.DataFrame, changed: pl.Series, *, key: str) -> SortedRun:
    """``run`` after the rows of the keys ``changed`` changed: ``frame`` holds their rows now (none
    for a key removed) and the rest of the rows as they were when the run was cut.

    A run holds every row from its start up to its last row. The changed rows leave it and come
    back where their new values put them, if that is still within its span (anywhere, for a run
    that reaches the end), so it still holds every row of that span, in order: the next pages
    are slices of it rather than a new selection from every row.
    """
    column, descending = run.column, run.descending
    changed_keys = pl.col(key).is_in(changed.implode())
    candidates = frame.lazy().filter(changed_keys).select(run.rows.columns)
    key_type = frame.schema[key]
    if run.after is not None:
        candidates = candidates.filter(
            _after(pl.col(column), pl.col(key), run.after, descending=descending, key_type=key_type)
        )
    if not run.complete and run.rows.height:
        last = run.rows.row(run.rows.height - 1, named=True)
        end = {"null": last[column] is None, "value": last[column], "id": last[key]}
        candidates = candidates.filter(
            ~_after(pl.col(column), pl.col(key), end, descending=descending, key_type=key_type)
        )
    by, reverse = _order(column, key, descending=descending)
    kept = run.rows.lazy().filter(~changed_keys)
    rows = pl.concat([kept, candidates]).sort(by, descending=reverse).collect()
    return SortedRun(column, descending, run.after, rows, complete=run.complete)


def _start_in(
    run: SortedRun | None, *, column: str, descending: bool, after: Mapping[str, Any] | None, key: str
) -> int | None:
    """Where the rows after ``after`` start in ``run``, or None when the run cannot tell."""
    if run is None or (run.column, run.descending) != (column, descending):
        return None
    if after is None:
        return 0 if run.after is None else None
    if run.after is not None and _same_position(run.after, after):
        return 0
    later = run.rows.select(
        _after(pl.col(column), pl.col(key), after, descending=descending, key_type=run.rows.schema[key])
        .arg_true()
        .first()
    ).item()
    # A run holds every row between its start and its end. When some of its rows are not after the
    # cursor, the cursor lies inside it and the rows after the cursor follow on from there; a run
    # from the start also holds every row before its first one.
    if later is None:
        reaches_end = run.complete and (run.after is None or run.rows.height > 0)
        return run.rows.height if reaches_end else None
    return int(later) if later > 0 or run.after is None else None


def _same_position(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    return (first["null"], first["value"], first["id"]) == (second["null"], second["value"], second["id"])


def _after(
    value: pl.Expr, key: pl.Expr, last: Mapping[str, Any], *, descending: bool, key_type: pl.DataType
) -> pl.Expr:
    # Typed: a 128-bit key (the customer table's) is no literal Polars would infer.
    last_id = pl.lit(last["id"], dtype=key_type)
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
