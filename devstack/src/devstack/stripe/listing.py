"""Stripe's list objects: newest first, paged by `starting_after` / `ending_before` / `limit`.

A list is kept oldest first by (created, id) so both cursors are a binary search; pages are handed out
newest first, as Stripe hands them out. Filters (`created[gte]=...` and the like) narrow the list before
paging, so a cursor names a position, not an index into one filtered page.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.stripe.errors import StripeError, invalid_parameter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
RANGE_OPERATORS = ("gt", "gte", "lt", "lte")
_BRACKETED = re.compile(r"^(?P<name>[a-z_]+)\[(?P<key>[a-z0-9_]*)\]$")


class SortedObjects:
    """Objects of one kind on one account, oldest first by (created, id)."""

    def __init__(self, objects: Iterable[dict[str, Any]]) -> None:
        self.items = sorted(objects, key=_position)
        self._positions = [_position(item) for item in self.items]

    def older_than(self, item: dict[str, Any]) -> Sequence[dict[str, Any]]:
        """Objects created before `item` (the page after it in Stripe's newest-first order)."""
        return self.items[: bisect.bisect_left(self._positions, _position(item))]

    def newer_than(self, item: dict[str, Any]) -> Sequence[dict[str, Any]]:
        """Objects created after `item`."""
        return self.items[bisect.bisect_right(self._positions, _position(item)) :]


def _position(item: dict[str, Any]) -> tuple[int, str]:
    return (item["created"], item["id"])


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The paging parameters of one list request."""

    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None
    ending_before: str | None = None


def parameter_name(key: str) -> str:
    """`created[gte]` -> `created`, `expand[0]` -> `expand`: the name Stripe validates."""
    match = _BRACKETED.match(key)
    return match["name"] if match else key


def reject_unknown(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    """Stripe's 400 for a parameter the endpoint does not take."""
    for key in query:
        if parameter_name(key) not in allowed:
            raise StripeError(f"Received unknown parameter: {key}", param=key, should_retry=False)


def page_request(query: Mapping[str, str]) -> PageRequest:
    """`limit`, `starting_after` and `ending_before` from the query string."""
    text = query.get("limit")
    limit = DEFAULT_LIMIT
    if text is not None:
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise invalid_parameter("limit", f"Invalid limit: must be an integer from 1 to {MAX_LIMIT}.")
        limit = int(text)
    starting_after = query.get("starting_after") or None
    ending_before = query.get("ending_before") or None
    if starting_after and ending_before:
        raise invalid_parameter(
            "ending_before", "You may only specify one of these parameters: starting_after, ending_before."
        )
    return PageRequest(limit=limit, starting_after=starting_after, ending_before=ending_before)


def range_filter(query: Mapping[str, str], name: str) -> Callable[[int], bool] | None:
    """`name=T` or `name[gt|gte|lt|lte]=T` as a test on a timestamp; None when absent."""
    bounds: list[tuple[str, int]] = []
    for key, text in query.items():
        if parameter_name(key) != name:
            continue
        operator = "eq" if key == name else key[len(name) + 1 : -1]
        if operator not in {"eq", *RANGE_OPERATORS}:
            raise StripeError(f"Received unknown parameter: {key}", param=key, should_retry=False)
        if not text.lstrip("-").isdigit():
            raise invalid_parameter(key, f"Invalid integer: {text}")
        bounds.append((operator, int(text)))
    if not bounds:
        return None

    def matches(value: int) -> bool:
        return all(_compare(value, operator, bound) for operator, bound in bounds)

    return matches


def _compare(value: int, operator: str, bound: int) -> bool:
    match operator:
        case "gt":
            return value > bound
        case "gte":
            return value >= bound
        case "lt":
            return value < bound
        case "lte":
            return value <= bound
        case _:
            return value == bound


def list_page(
    objects: SortedObjects,
    request: PageRequest,
    *,
    url: str,
    keep: Callable[[dict[str, Any]], bool] | None,
    find: Callable[[str, str], dict[str, Any]],
) -> dict[str, Any]:
    """One page of `objects` (those `keep` accepts, when given), as Stripe's list object.

    `find(id, param)` returns the cursor object or raises Stripe's resource_missing for that parameter.
    """
    newer_side = request.ending_before is not None
    if request.starting_after is not None:
        candidates = objects.older_than(find(request.starting_after, "starting_after"))
    elif request.ending_before is not None:
        candidates = objects.newer_than(find(request.ending_before, "ending_before"))
    else:
        candidates = objects.items
    if keep is not None:
        candidates = [o for o in candidates if keep(o)]
    # Oldest first here: the page after a cursor is the newest of what is older; before it, the oldest
    # of what is newer. Either way it is handed out newest first.
    page = candidates[: request.limit] if newer_side else candidates[-request.limit :]
    return {
        "object": "list",
        "data": list(page)[::-1],
        "has_more": len(candidates) > request.limit,
        "url": url,
    }
