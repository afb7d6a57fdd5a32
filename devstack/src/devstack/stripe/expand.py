"""`expand[]`: replace an id with the object it names, as Stripe does, up to four levels deep.

Only the fields Stripe documents as expandable expand; others are Stripe's 400. An expanded object must
be readable by the account asking, except for the links Stripe follows across accounts (a transfer's
destination payment, an application fee's connected account and charge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.stripe.errors import StripeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeAlias

    # (object id, cross-account allowed) -> the object, or None when the asking account cannot read it
    Resolve: TypeAlias = Callable[[str, bool], dict[str, Any] | None]

MAX_DEPTH = 4

# object type -> expandable field -> whether the linked object may live on another account
EXPANDABLE: dict[str, dict[str, bool]] = {
    "payment_intent": {"latest_charge": False, "on_behalf_of": True, "transfer_data.destination": True},
    "charge": {
        "balance_transaction": False,
        "payment_intent": False,
        "transfer": False,
        "application_fee": False,
        "on_behalf_of": True,
        "source_transfer": True,
    },
    "balance_transaction": {"source": False},
    "transfer": {"destination": True, "destination_payment": True, "source_transaction": False},
    "payout": {"destination": False},
    "application_fee": {"account": True, "charge": True, "originating_transaction": False},
    "refund": {"charge": False, "payment_intent": False},
    "dispute": {"charge": False, "payment_intent": False},
}


def expand_paths(query_items: Iterable[tuple[str, str]]) -> list[str]:
    """Every `expand`, `expand[]` or `expand[N]` value of a query string."""
    return [
        value
        for key, value in query_items
        if key == "expand" or (key.startswith("expand[") and key.endswith("]"))
    ]


def expand(obj: dict[str, Any], paths: Iterable[str], resolve: Resolve) -> dict[str, Any]:
    """A copy of `obj` with each dotted path expanded; `obj` itself is never changed."""
    result = obj
    for path in paths:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise StripeError(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
                should_retry=False,
            )
        result = _expand_one(result, parts, path, resolve)
    return result


def expand_list(page: dict[str, Any], paths: Iterable[str], resolve: Resolve) -> dict[str, Any]:
    """A list page with each `data.`-prefixed path expanded on every item."""
    item_paths = []
    for path in paths:
        head, _, rest = path.partition(".")
        if head != "data" or not rest:
            raise _not_expandable(path)
        item_paths.append(rest)
    if not item_paths:
        return page
    return {**page, "data": [expand(item, item_paths, resolve) for item in page["data"]]}


def _expand_one(obj: dict[str, Any], parts: list[str], path: str, resolve: Resolve) -> dict[str, Any]:
    fields = EXPANDABLE.get(obj.get("object", ""), {})
    dotted = ".".join(parts[:2])
    if len(parts) > 1 and dotted in fields:
        # `transfer_data.destination`: one expandable field inside a hash.
        outer, inner = parts[0], parts[1]
        container = obj.get(outer)
        if container is None:
            return obj
        expanded = _resolved(container.get(inner), parts[2:], path, resolve, cross_account=fields[dotted])
        return {**obj, outer: {**container, inner: expanded}}
    name = parts[0]
    if name not in fields:
        raise _not_expandable(path)
    return {**obj, name: _resolved(obj.get(name), parts[1:], path, resolve, cross_account=fields[name])}


def _resolved(
    value: Any,
    rest: list[str],
    path: str,
    resolve: Resolve,
    *,
    cross_account: bool,
) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        found = resolve(value, cross_account)
        if found is None:
            # The link is there but the asking account cannot see its target: Stripe leaves the id.
            return value
        value = found
    return _expand_one(value, rest, path, resolve) if rest else value


def _not_expandable(path: str) -> StripeError:
    return StripeError(f"This property cannot be expanded ({path}).", param="expand", should_retry=False)
