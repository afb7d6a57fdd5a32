"""The OpenTickets API client: OAuth2 client credentials (or an API key), retries, cursor paging.

Retries use exponential backoff with full jitter and honour ``Retry-After``; they cover 429, 5xx,
timeouts and dropped connections. A refused token is replaced and the request repeated without
using up an attempt (up to three times a request; then the credentials are wrong).
Other 4xx answers are permanent and raised as ``SourceRequestError`` with the server's detail.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import structlog

from otcommon.schemas import format_timestamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pydantic import SecretStr

log = structlog.get_logger("ingest.source")

_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
_TOKEN_MARGIN_SECONDS = 30.0
_MAX_TOKEN_REFRESHES = 3
"""A token refused this often in one request means the credentials, not the clock, are wrong."""


class SourceError(Exception):
    """The source could not be read."""


class SourceRequestError(SourceError):
    """The source refused the request (a 4xx other than 401/408/429): retrying will not help."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"OpenTickets API answered {status}: {detail}")


class SourceUnavailableError(SourceError):
    """The source kept failing past the retry budget."""


@dataclass(frozen=True, slots=True)
class TransactionPage:
    """One page of transactions and the cursor of the next (None on the last page)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


class TransactionSource(Protocol):
    """Where transactions come from; the API client and test fakes implement it."""

    def pages(
        self, *, updated_since: datetime | None, event_id: str | None = None
    ) -> AsyncIterator[TransactionPage]: ...

    async def events(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently requests are repeated."""

    max_attempts: int = 8
    base_delay_seconds: float = 0.2
    max_delay_seconds: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(
        self, attempt: int, *, retry_after: float | None, rand: Callable[[], float] = random.random
    ) -> float:
        """Full-jitter exponential backoff, but never sooner than the server asked."""
        ceiling: float = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (attempt - 1))
        backoff = ceiling * rand()
        return max(backoff, retry_after or 0.0)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - (now or datetime.now(tz=UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Credentials:
    """OAuth2 client credentials, or an API key."""

    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_key: SecretStr | None = None


class OpenTicketsClient:
    """A :class:`TransactionSource` over the OpenTickets HTTP API."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        credentials: Credentials,
        page_size: int = 500,
        retry: RetryPolicy | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        if credentials.api_key is None and not (credentials.client_id and credentials.client_secret):
            raise SourceError("configure OpenTickets credentials: a client id and secret, or an API key")
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._page_size = page_size
        self._retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.requests = 0
        self.retries = 0
        self.token_refreshes = 0

    async def events(self) -> list[dict[str, Any]]:
        """Every event of the account."""
        body = await self._get_json("/v1/events", {})
        data = body.get("data", [])
        if not isinstance(data, list):
            raise SourceError("OpenTickets API events response has no data list")
        return [event for event in data if isinstance(event, dict)]

    async def pages(
        self, *, updated_since: datetime | None, event_id: str | None = None
    ) -> AsyncIterator[TransactionPage]:
        """Pages of transactions changed since ``updated_since``, oldest change first."""
        params: dict[str, str] = {"limit": str(self._page_size)}
        if updated_since is not None:
            params["updatedSince"] = format_timestamp(updated_since)
        if event_id is not None:
            params["eventId"] = event_id
        cursor: str | None = None
        while True:
            query = {**params, "cursor": cursor} if cursor else params
            body = await self._get_json("/v1/transactions", query)
            data = body.get("data")
            if not isinstance(data, list):
                raise SourceError("OpenTickets API page has no data list")
            next_cursor = body.get("nextCursor")
            yield TransactionPage(rows=data, next_cursor=next_cursor)
            if not next_cursor:
                return
            cursor = str(next_cursor)

    async def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        attempt = refreshes = 0
        while True:
            self.requests += 1
            outcome = await self._get_once(path, params)
            if isinstance(outcome, dict):
                return outcome
            if isinstance(outcome, _TokenRefused):
                if self._credentials.api_key is not None:
                    raise SourceRequestError(401, outcome.detail)
                if refreshes >= _MAX_TOKEN_REFRESHES:
                    raise SourceRequestError(
                        401, f"{outcome.detail} (refused {refreshes + 1} fresh tokens: check the credentials)"
                    )
                # An expired or revoked token: fetch a new one. The request did not fail, so the
                # repeat costs no retry attempt.
                refreshes += 1
                self.token_refreshes += 1
                self._token = None
                continue
            attempt += 1
            await self._retry_after_failure(path, attempt, outcome)

    async def _get_once(self, path: str, params: dict[str, str]) -> dict[str, Any] | _TokenRefused | _Failure:
        """One request: the JSON body, a refused token, or a failure worth retrying (others raise)."""
        try:
            headers = await self._auth_headers()
            async with self._session.get(
                f"{self._base_url}{path}", params=params, headers=headers, timeout=self._timeout
            ) as response:
                if response.status == 200:  # noqa: PLR2004
                    # A truncated or garbled body: the next attempt may get it whole.
                    body = await _json_object(response)
                    return body if body is not None else _Failure("a 200 response without a JSON object")
                detail = await _detail(response)
                if response.status == 401:  # noqa: PLR2004
                    return _TokenRefused(detail)
                if response.status not in _RETRYABLE_STATUSES:
                    raise SourceRequestError(response.status, detail)
                retry_after = _capped(parse_retry_after(response.headers.get("Retry-After")), path)
                return _Failure(f"HTTP {response.status}", retry_after=retry_after)
        except _TRANSIENT_ERRORS as exc:
            return _Failure(_describe(exc), error=exc)

    async def _retry_after_failure(self, path: str, attempt: int, failure: _Failure) -> None:
        """Wait before the next attempt; SourceUnavailableError when this was the last one."""
        if attempt >= self._retry.max_attempts:
            raise SourceUnavailableError(
                f"{path}: gave up after {attempt} attempts, last: {failure.reason}"
            ) from failure.error
        self.retries += 1
        delay = self._retry.delay(attempt, retry_after=failure.retry_after)
        log.info("source retry", path=path, attempt=attempt, reason=failure.reason, delay_s=round(delay, 3))
        await asyncio.sleep(delay)

    async def _auth_headers(self) -> dict[str, str]:
        if self._credentials.api_key is not None:
            return {"X-Api-Key": self._credentials.api_key.get_secret_value()}
        async with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_expires:
                await self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    async def _fetch_token(self) -> None:
        assert self._credentials.client_id is not None  # noqa: S101 - checked in __init__
        assert self._credentials.client_secret is not None  # noqa: S101
        form = {
            "grant_type": "client_credentials",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret.get_secret_value(),
        }
        path = "/oauth/token"
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                async with self._session.post(
                    f"{self._base_url}{path}", data=form, timeout=self._timeout
                ) as response:
                    if response.status == 200:  # noqa: PLR2004
                        token, lifetime = _token_fields(await response.json(content_type=None))
                        self._token = token
                        self._token_expires = time.monotonic() + max(1.0, lifetime - _TOKEN_MARGIN_SECONDS)
                        return
                    detail = await _detail(response)
                    if response.status not in _RETRYABLE_STATUSES:
                        raise SourceRequestError(response.status, f"token request refused: {detail}")
                    retry_after = _capped(parse_retry_after(response.headers.get("Retry-After")), path)
                    failure = _Failure(f"HTTP {response.status}", retry_after=retry_after)
            except (
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
                TimeoutError,
                ValueError,
            ) as exc:
                # ValueError: a 200 whose body is not JSON; the next attempt may get it whole.
                failure = _Failure(_describe(exc), error=exc)
            await self._retry_after_failure(path, attempt, failure)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _TokenRefused:
    """A 401: the token expired or was revoked (or the credentials are wrong)."""

    detail: str


@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed attempt worth repeating: why, how long the server asked to wait, and the error."""

    reason: str
    retry_after: float | None = None
    error: BaseException | None = None


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


async def _json_object(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


MAX_RETRY_AFTER_SECONDS = 300.0


def _capped(retry_after: float | None, path: str) -> float | None:
    """A server asking to wait longer than a sync should stall is failed, not obeyed."""
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS:
        raise SourceUnavailableError(f"{path}: the API asks to retry after {retry_after:.0f}s")
    return retry_after


def _token_fields(body: Any) -> tuple[str, float]:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise SourceError("the token endpoint answered without an access_token")
    try:
        lifetime = float(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    return body["access_token"], lifetime


async def _detail(response: aiohttp.ClientResponse) -> str:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return (await response.text())[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error_description") or body.get("title") or body)[:200]
    return str(body)[:200]
