"""Client-credentials tokens and API keys for the sandbox's data endpoints."""

from __future__ import annotations

import base64
import binascii
import enum
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otcommon.http import UnauthorizedError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

REALM = "opentickets"
# Bounds the token table: a client that never reuses tokens cannot grow it without limit.
MAX_LIVE_TOKENS = 10_000


class TokenState(enum.Enum):
    """What the store knows about a presented token."""

    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly issued access token."""

    access_token: str
    expires_in: int


class TokenStore:
    """Issues bearer tokens and answers whether one is still valid."""

    def __init__(self, *, ttl_seconds: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self) -> IssuedToken:
        """A new token valid for the configured lifetime."""
        now = self._clock()
        if len(self._expiry) >= MAX_LIVE_TOKENS:
            self._expiry = {token: at for token, at in self._expiry.items() if at > now}
        token = secrets.token_urlsafe(24)
        self._expiry[token] = now + self._ttl
        return IssuedToken(access_token=token, expires_in=self._ttl)

    def check(self, token: str) -> TokenState:
        """Whether `token` is valid, expired or was never issued."""
        expiry = self._expiry.get(token)
        if expiry is None:
            return TokenState.UNKNOWN
        return TokenState.VALID if self._clock() < expiry else TokenState.EXPIRED

    def expire(self, token: str) -> None:
        """Make `token` expired now."""
        if token in self._expiry:
            self._expiry[token] = self._clock()

    def expire_all(self) -> int:
        """Expire every issued token; returns how many were still valid."""
        now = self._clock()
        live = [token for token, at in self._expiry.items() if at > now]
        for token in live:
            self._expiry[token] = now
        return len(live)


def unauthorized(detail: str, *, error: str | None = None) -> UnauthorizedError:
    """A 401 with the RFC 6750 challenge of this sandbox's realm."""
    return UnauthorizedError(detail, realm=REALM, error=error)


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """Client id and secret from HTTP Basic authentication (RFC 6749 section 2.3.1)."""
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None
