"""Shared access signature checks for `put-token`, done the way Azure Service Bus does them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs, quote_plus, urlsplit

from devstack.servicebus.errors import UnauthorizedError

SAS_TOKEN_TYPE = "servicebus.windows.net:sastoken"  # noqa: S105 - a token type name, not a secret
_PREFIX = "SharedAccessSignature "


@dataclass(frozen=True)
class SharedAccessKey:
    """The one authorization rule the emulator knows."""

    name: str
    key: str


def audience_path(audience: str) -> str:
    """The entity path an audience names (`sb://host/queue` -> `queue`), lower-case."""
    if "://" in audience:
        return urlsplit(audience).path.strip("/").lower()
    return audience.strip("/").lower()


def verify_token(token: str, *, rule: SharedAccessKey, now: float) -> str:
    """Check a SAS token's key name, signature and expiry; return the audience path it grants."""
    if not token.startswith(_PREFIX):
        raise UnauthorizedError("InvalidSignature: the token is not a SharedAccessSignature.")
    fields = {
        name: values[0] for name, values in parse_qs(token[len(_PREFIX) :], keep_blank_values=True).items()
    }
    missing = [name for name in ("sr", "sig", "se", "skn") if name not in fields]
    if missing:
        raise UnauthorizedError(f"InvalidSignature: the token is missing {', '.join(missing)}.")
    if fields["skn"] != rule.name:
        raise UnauthorizedError(f"InvalidSignature: unknown authorization rule '{fields['skn']}'.")
    try:
        expiry = int(fields["se"])
    except ValueError:
        raise UnauthorizedError("InvalidSignature: the token expiry is not a number.") from None
    if expiry <= now:
        raise UnauthorizedError("ExpiredToken: the token has expired.")
    resource = fields["sr"]
    presented = fields["sig"].encode()
    # Clients differ in whether they lower-case the resource before signing, and some sign the resource
    # exactly as written in the token without URL-encoding it (the SDK's SAS sample does); Azure takes all.
    as_written = _field_as_written(token[len(_PREFIX) :], "sr")
    candidates = {quote_plus(resource), quote_plus(resource.lower()), as_written or quote_plus(resource)}
    for candidate in candidates:
        string_to_sign = f"{candidate}\n{expiry}".encode()
        expected = base64.b64encode(hmac.new(rule.key.encode(), string_to_sign, hashlib.sha256).digest())
        if hmac.compare_digest(expected, presented):
            return audience_path(resource)
    raise UnauthorizedError("InvalidSignature: The token has an invalid signature.")


def _field_as_written(query: str, name: str) -> str | None:
    """A token field's value before URL-decoding."""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


def grants(audiences: set[str], entity_path: str) -> bool:
    """Whether any accepted audience covers the entity (an audience covers itself and what lies below)."""
    path = entity_path.lower()
    return any(not granted or path == granted or path.startswith(granted + "/") for granted in audiences)
