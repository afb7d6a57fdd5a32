"""A verified Stripe event as the service keeps it: the fields it routes on, and the whole payload."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class MalformedEventError(Exception):
    """A signed body that is not a Stripe event (bad JSON or a missing field); names what is wrong."""


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """The routing fields of one event; ``payload`` is the event as Stripe sent it."""

    id: str
    type: str
    created: int
    livemode: bool
    account: str | None
    payload: dict[str, Any]

    @property
    def data_object(self) -> dict[str, Any]:
        """``data.object``: the Stripe object in the state this event describes."""
        data = self.payload.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        return obj if isinstance(obj, dict) else {}

    @classmethod
    def parse(cls, text: str) -> StripeEvent:
        """The event in a verified body; MalformedEventError naming the first missing or bad field."""
        try:
            payload = json.loads(text)
        except ValueError as error:
            raise MalformedEventError(f"body is not JSON: {error}") from None
        return cls.from_payload(payload)

    @classmethod
    def from_payload(cls, payload: Any) -> StripeEvent:
        """The event in decoded JSON (a delivery's body, or one listed by Stripe's API)."""
        if not isinstance(payload, dict) or payload.get("object") != "event":
            raise MalformedEventError("body is not a Stripe event object")
        event_id, event_type, created = payload.get("id"), payload.get("type"), payload.get("created")
        if not isinstance(event_id, str) or not event_id.startswith("evt_"):
            raise MalformedEventError("id must be an evt_ identifier")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedEventError("type is missing")
        if not isinstance(created, int) or isinstance(created, bool):
            raise MalformedEventError("created must be a Unix timestamp")
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
            raise MalformedEventError("data.object is missing")
        account = payload.get("account")
        return cls(
            id=event_id,
            type=event_type,
            created=created,
            livemode=payload.get("livemode") is True,
            account=account if isinstance(account, str) else None,
            payload=payload,
        )
