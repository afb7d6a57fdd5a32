"""Which Stripe account a payment's money belongs to (SPEC section 5's classification)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


class RouteType(StrEnum):
    """``stripeRouteType``: on the platform's own balance, or for a connected account."""

    PLATFORM = "platform"
    CONNECTED = "connected"


@dataclass(frozen=True, slots=True)
class Route:
    """A classified payment: its route and, for connected routes, the organizer's account."""

    route_type: RouteType
    destination_account_id: str | None = None
    direct: bool = False
    """True for a direct charge: the charge itself lives on the connected account."""


def object_id(value: Any) -> str | None:
    """The id of a Stripe reference, whether it is expanded (an object) or not (an id string)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def classify_route(
    *,
    owner_account_id: str | None,
    charge: Mapping[str, Any] | None,
    payment_intent: Mapping[str, Any] | None = None,
    transfer_destination: str | None = None,
) -> Route:
    """The route of a payment found on ``owner_account_id`` (None: the platform's own objects).

    A charge or PaymentIntent readable only with a connected account's header is a direct charge
    on that account. A platform object that names a destination (``transfer_data.destination``),
    settles for another account (``on_behalf_of``) or was transferred to a connected account
    (``transfer_destination``, from the transfer of a separate-transfer payment) is connected to
    that account. Anything else stays on the platform.
    """
    if owner_account_id is not None:
        return Route(RouteType.CONNECTED, destination_account_id=owner_account_id, direct=True)
    for source in (charge, payment_intent):
        if source is None:
            continue
        transfer_data = source.get("transfer_data")
        destination = object_id(transfer_data.get("destination")) if isinstance(transfer_data, dict) else None
        destination = destination or object_id(source.get("on_behalf_of"))
        if destination:
            return Route(RouteType.CONNECTED, destination_account_id=destination)
    if transfer_destination:
        return Route(RouteType.CONNECTED, destination_account_id=transfer_destination)
    return Route(RouteType.PLATFORM)
