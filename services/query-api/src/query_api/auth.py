"""Bearer JWTs: who the caller is and which events they may see.

Two kinds of key, chosen by the token's ``alg`` header and never mixed (so an RS256 public key is
never used as an HS256 secret): HS256 with the configured shared secret (local runs, ``python -m
query_api token``), and RS256 with the identity provider's published keys (Microsoft Entra ID),
fetched over HTTP without blocking the event loop, cached, and fetched again when a token names a
key id the cache does not hold (providers rotate keys) or when the cache is old.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import jwt
import structlog

from otcommon.http import Principal, ServiceUnavailableError, UnauthorizedError, bearer_token

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from pydantic import SecretStr

REALM: Final = "query-api"
SHARED_SECRET_ALGORITHM: Final = "HS256"  # noqa: S105 - an algorithm name, not a secret
PUBLISHED_KEY_ALGORITHMS: Final = ("RS256",)
REQUIRED_CLAIMS: Final = ("exp", "iss", "aud")

log = structlog.get_logger("query_api.auth")


class KeySetUnavailableError(Exception):
    """The identity provider's keys could not be fetched (and none are cached)."""


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What every token must carry, and where it says which events it may see."""

    issuer: str
    audience: str
    events_claim: str = "events"
    leeway_seconds: int = 30


class PublishedKeys:
    """A cache of the provider's JWKS: fetched when first needed, when old, and for an unknown key id.

    ``fetch`` returns the JWKS document; one fetch runs at a time and concurrent callers share it.
    A failed fetch keeps the keys already held, so a provider outage does not lock everyone out.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Mapping[str, Any]]],
        *,
        refresh_seconds: float,
        min_refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refresh_seconds = refresh_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, key_id: str) -> jwt.PyJWK | None:
        """The published key with this id; None when the provider does not publish it."""
        if self._fetched_at is None or self._age() >= self._refresh_seconds:
            await self._refetch(unless_newer_than=self._fetched_at)
        elif key_id not in self._keys and self._age() >= self._min_refetch_seconds:
            # A provider publishes a new key before signing with it: an unknown id means our copy is old.
            await self._refetch(unless_newer_than=self._fetched_at)
        return self._keys.get(key_id)

    def _age(self) -> float:
        assert self._fetched_at is not None  # noqa: S101 - callers check
        return self._clock() - self._fetched_at

    async def _refetch(self, *, unless_newer_than: float | None) -> None:
        async with self._lock:
            if self._fetched_at is not None and self._fetched_at != unless_newer_than:
                return  # another caller fetched while this one waited
            self.fetches += 1
            try:
                document = await self._fetch()
                keys = {
                    key.key_id: key
                    for key in jwt.PyJWKSet.from_dict(dict(document)).keys
                    if key.key_id is not None and key.algorithm_name in PUBLISHED_KEY_ALGORITHMS
                }
            except Exception as error:
                log.warning("jwks fetch failed", error_type=type(error).__name__, keys_held=len(self._keys))
                if not self._keys:
                    raise KeySetUnavailableError(str(error)) from error
                # Keep what is held; try again after the minimum interval, not on every request.
                self._fetched_at = self._clock() - self._refresh_seconds + self._min_refetch_seconds
                return
            self._keys = keys
            self._fetched_at = self._clock()
            log.info("jwks fetched", keys=len(keys))


class TokenVerifier:
    """Turns ``Authorization: Bearer <jwt>`` into a ``Principal`` whose ``event_ids`` scope every read."""

    def __init__(
        self,
        *,
        rules: TokenRules,
        shared_secret: SecretStr | None = None,
        published_keys: PublishedKeys | None = None,
    ) -> None:
        self._rules = rules
        self._secret = shared_secret
        self._published = published_keys

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's principal; a 401 with a ``WWW-Authenticate`` challenge for any bad token."""
        token = bearer_token(headers)
        if token is None:
            raise UnauthorizedError("Send Authorization: Bearer <token>", realm=REALM)
        key, algorithm = await self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._rules.audience,
                issuer=self._rules.issuer,
                leeway=self._rules.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _invalid("the token is not meant for this API (aud)") from None
        except jwt.InvalidIssuerError:
            raise _invalid("the token was not issued by the configured issuer (iss)") from None
        except jwt.InvalidSignatureError:
            raise _invalid("the token's signature is not valid") from None
        except jwt.MissingRequiredClaimError as error:
            raise _invalid(f"the token lacks the {error.claim!r} claim") from None
        except jwt.PyJWTError:
            raise _invalid("the token is not a valid JWT") from None
        return self._principal(claims)

    async def _key_for(self, token: str) -> tuple[Any, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("the token is not a valid JWT") from None
        algorithm = header.get("alg")
        if algorithm == SHARED_SECRET_ALGORITHM and self._secret is not None:
            return self._secret.get_secret_value(), algorithm
        if algorithm in PUBLISHED_KEY_ALGORITHMS and self._published is not None:
            key_id = header.get("kid")
            if not isinstance(key_id, str):
                raise _invalid("the token names no key (kid)")
            try:
                key = await self._published.key(key_id)
            except KeySetUnavailableError:
                raise ServiceUnavailableError(
                    "the identity provider's signing keys cannot be fetched; try again shortly",
                    retry_after_seconds=5,
                ) from None
            if key is None:
                raise _invalid("the token is signed with a key the identity provider does not publish")
            return key, algorithm
        raise _invalid(f"tokens signed with {algorithm!r} are not accepted")

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        name = claims.get("sub")
        scope = claims.get(self._rules.events_claim)
        if scope is None:
            event_ids = None
        elif _is_string_list(scope):
            event_ids = frozenset(scope)
        else:
            # A scope we cannot read must not widen to every event.
            raise _invalid(f"the {self._rules.events_claim!r} claim must be a list of event ids")
        return Principal(name=name if isinstance(name, str) else "unnamed", event_ids=event_ids)


def _is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _invalid(detail: str) -> UnauthorizedError:
    return UnauthorizedError(detail, realm=REALM, error="invalid_token")


def issue_local_token(
    *,
    secret: str,
    rules: TokenRules,
    subject: str,
    events: Sequence[str] | None,
    lifetime_seconds: int,
    now: float | None = None,
) -> str:
    """An HS256 token for the shared secret (``python -m query_api token``, tests, ``make run``)."""
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": rules.issuer,
        "aud": rules.audience,
        "sub": subject,
        "iat": issued_at,
        "exp": issued_at + lifetime_seconds,
    }
    if events is not None:
        claims[rules.events_claim] = list(events)
    return jwt.encode(claims, secret, algorithm=SHARED_SECRET_ALGORITHM)
