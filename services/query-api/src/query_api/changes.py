"""What kind of change a new version of a transaction is, judged from the served row before and after."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from otcommon.schemas import ENRICHMENT_FIELDS
from query_api.hub import ChangeEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

# The enricher's fields and its bookkeeping beside them: a change only there is an enrichment.
_ENRICHMENT_SIDE: Final = ENRICHMENT_FIELDS | {
    "enrichmentState",
    "enrichmentReason",
    "enrichedAt",
    "stripePayoutId",
    "stripePayoutStatus",
    "stripeCurrency",
}


class ChangeKind(StrEnum):
    """Why the dashboard should look again; the first that applies, in this order."""

    SALE = "sale"
    """A transaction the replica did not hold before."""
    REMOVAL = "removal"
    """The transaction was deleted."""
    REFUND = "refund"
    """IsRefunded turned true."""
    DISPUTE = "dispute"
    """IsDisputed turned true."""
    ENRICHMENT = "enrichment"
    """Only enrichment fields changed."""
    UPDATE = "update"
    """Anything else the API serves changed (a source correction, a refund withdrawn, a scan)."""


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """The served fields whose value differs, sorted; none for a sale or a removal (the whole row)."""
    if old is None or new is None:
        return []
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def change_kind(  # noqa: PLR0911 - one return per kind, in the order the kinds are tried
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> ChangeKind | None:
    """The kind of change from ``old`` to ``new`` (served rows; None = absent); None when nothing changed."""
    if old is None:
        return None if new is None else ChangeKind.SALE
    if new is None:
        return ChangeKind.REMOVAL
    changed = set(changed_fields(old, new))
    if not changed:
        return None
    if "IsRefunded" in changed and new.get("IsRefunded") is True:
        return ChangeKind.REFUND
    if "IsDisputed" in changed and new.get("IsDisputed") is True:
        return ChangeKind.DISPUTE
    if changed <= _ENRICHMENT_SIDE:
        return ChangeKind.ENRICHMENT
    return ChangeKind.UPDATE


def change_event(
    *, position: int, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> ChangeEvent | None:
    """The stream event for one applied change, or None when nothing the API serves changed."""
    kind = change_kind(old, new)
    current = new if new is not None else old
    if kind is None or current is None:
        return None
    event_id = str(current["eventId"])
    data = {
        "kind": kind.value,
        "id": current["id"],
        "eventId": event_id,
        "changed": changed_fields(old, new),
        "transaction": dict(new) if new is not None else None,
    }
    return ChangeEvent(position=position, event_id=event_id, data=json.dumps(data, separators=(",", ":")))
