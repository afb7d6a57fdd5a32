"""Keyset paging over (updatedAt, id): stable while rows change.

A changed row gets a newer updatedAt, so it moves behind every row a client has already passed and
shows up again on a later page instead of shifting the pages in between.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otcommon.http import InvalidParameterError

if TYPE_CHECKING:
    from devstack.scenario import Scenario
    from devstack.scenario.generator import Changes

_CURSOR_VERSION = 1
_PAST_ANY_INDEX = sys.maxsize


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row a page returned, and the filters the page was asked with."""

    updated_at: int
    id: str
    filters: str


def filter_fingerprint(*, updated_since: int | None, event_id: str | None) -> str:
    """A short digest of the filters, so a cursor cannot be replayed with other filters."""
    text = json.dumps([updated_since, event_id])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(cursor: Cursor) -> str:
    """The opaque text form of a cursor."""
    raw = json.dumps({"v": _CURSOR_VERSION, "u": cursor.updated_at, "i": cursor.id, "f": cursor.filters})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class InvalidCursorError(InvalidParameterError):
    """A 400 for a cursor the server cannot use."""

    slug = "invalid-cursor"

    def __init__(self, detail: str) -> None:
        super().__init__("cursor", detail)


def decode_cursor(text: str) -> Cursor:
    """Parse a cursor made by `encode_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise InvalidCursorError("cursor is not one this server issued") from error
    if (
        not isinstance(data, dict)
        or data.get("v") != _CURSOR_VERSION
        or not isinstance(data.get("u"), int)
        or not isinstance(data.get("i"), str)
        or not isinstance(data.get("f"), str)
    ):
        raise InvalidCursorError("cursor is not one this server issued")
    return Cursor(updated_at=data["u"], id=data["i"], filters=data["f"])


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows and the cursor of the next page (None at the end)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


class TransactionIndex:
    """Every visible order of a scenario sorted by (updatedAt, id)."""

    def __init__(self, scenario: Scenario) -> None:
        self._scenario = scenario
        self._rebuild()

    def _rebuild(self) -> None:
        scenario = self._scenario
        entries: list[tuple[int, str, int]] = []
        self._events: dict[int, str] = {}
        self._key_of: dict[str, tuple[int, str, int]] = {}
        for order in scenario.orders():
            key = (order.updated_at(scenario.now), order.id, order.index)
            entries.append(key)
            self._events[order.index] = order.event_id
            self._key_of[order.id] = key
        entries.sort()
        self._entries = entries
        self._seen = len(entries)
        self._version = scenario.version

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, changes: Changes) -> None:
        """Move the rows `changes` names behind all others (their updatedAt is newer)."""
        scenario = self._scenario
        if scenario.version == self._version:
            return
        if scenario.version != self._version + 1:
            # The scenario also changed elsewhere; `changes` alone would leave the index stale.
            self._rebuild()
            return
        changed = set(changes.updated_ids)
        moved: list[tuple[int, str, int]] = []
        for order_id in changed:
            _, _, index = self._key_of[order_id]
            moved.append((scenario.order(index).updated_at(scenario.now), order_id, index))
        for index in itertools.islice(scenario.order_indexes(), self._seen, None):
            order = scenario.order(index)
            self._events[index] = order.event_id
            moved.append((order.updated_at(scenario.now), order.id, index))
            self._seen += 1
        kept = [entry for entry in self._entries if entry[1] not in changed] if changed else self._entries
        moved.sort()
        if kept and moved and moved[0] < kept[-1]:
            # Cannot happen when time only moves forward; stay correct anyway.
            kept.extend(moved)
            kept.sort()
        else:
            kept.extend(moved)
        self._entries = kept
        for key in moved:
            self._key_of[key[1]] = key
        self._version = scenario.version

    def ensure_current(self) -> None:
        """Rebuild if the scenario changed behind the index's back."""
        if self._scenario.version != self._version:
            self._rebuild()

    def page(
        self, *, limit: int, updated_since: int | None, event_id: str | None, cursor: str | None
    ) -> Page:
        """Rows after the cursor (or from `updated_since`), at most `limit` of them."""
        self.ensure_current()
        filters = filter_fingerprint(updated_since=updated_since, event_id=event_id)
        start = 0
        if updated_since is not None:
            start = bisect.bisect_left(self._entries, (updated_since,))
        if cursor is not None:
            after = decode_cursor(cursor)
            if after.filters != filters:
                raise InvalidCursorError(
                    "cursor was issued for other filters; repeat the first request's filters"
                )
            start = max(
                start, bisect.bisect_right(self._entries, (after.updated_at, after.id, _PAST_ANY_INDEX))
            )
        picked: list[tuple[int, str, int]] = []
        has_more = False
        entries = self._entries
        for position in range(start, len(entries)):
            entry = entries[position]
            if event_id is not None and self._events[entry[2]] != event_id:
                continue
            if len(picked) == limit:
                has_more = True
                break
            picked.append(entry)
        rows = [self._scenario.row(self._scenario.order(index)) for _, _, index in picked]
        next_cursor = None
        if has_more:
            last = picked[-1]
            next_cursor = encode_cursor(Cursor(updated_at=last[0], id=last[1], filters=filters))
        return Page(rows=rows, next_cursor=next_cursor)
