"""Bearer tokens: which principal a request's token belongs to, compared in constant time.

Several tokens may be valid at once, so a token can be rotated without downtime: add the new one,
move the clients, remove the old one. Each token maps to a ``Principal``; a service that scopes
access (the query API's per-event tokens) reads the principal's scope, one that does not ignores it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otcommon.http.problems import UnauthorizedError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token belongs to (a name fit for logs, never the token) and what it may see."""

    name: str
    event_ids: frozenset[str] | None = None
    """The events this principal may see; None means every event."""

    def may_see_event(self, event_id: str) -> bool:
        """Whether this principal's scope includes ``event_id``."""
        return self.event_ids is None or event_id in self.event_ids


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` against the configured tokens."""

    def __init__(self, *, realm: str, principals: Mapping[str, Principal]) -> None:
        self._realm = realm
        # Digests have one length, so compare_digest's time does not depend on the token's length.
        self._principals = [(_digest(token), principal) for token, principal in principals.items() if token]

    @classmethod
    def of_tokens(cls, tokens: Iterable[str], *, realm: str, principal: Principal) -> BearerAuth:
        """Every token (current and rotated-out alike) stands for the same principal."""
        return cls(realm=realm, principals=dict.fromkeys(tokens, principal))

    @property
    def realm(self) -> str:
        """The protection space named in the challenge."""
        return self._realm

    @property
    def configured(self) -> bool:
        """Whether any token is valid; with none, every request is refused."""
        return bool(self._principals)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal of the request's bearer token; a 401 when it is missing, malformed or wrong."""
        token = bearer_token(headers)
        if token is None:
            # RFC 6750 section 3.1: without bearer credentials, the challenge carries no error code.
            raise UnauthorizedError("Send Authorization: Bearer <token>", realm=self._realm)
        presented = _digest(token)
        found: Principal | None = None
        # Every configured token is compared, so the time taken does not tell which one came close.
        for digest, principal in self._principals:
            if hmac.compare_digest(digest, presented):
                found = principal
        if found is None:
            raise UnauthorizedError("The bearer token is not valid", realm=self._realm, error="invalid_token")
        return found


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is none or it is empty."""
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    if scheme.casefold() != "bearer":
        return None
    return credentials.strip() or None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets, their lengths included."""
    return hmac.compare_digest(_digest(given), _digest(expected))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
