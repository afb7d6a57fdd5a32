"""One rate gate for every Stripe request of the process, and the HTTP client that passes through it.

Stripe allows about 25 requests/s in test mode and 100 in live mode, per account key; every request
of the process, retries included, waits for the leaky bucket. A 429 closes the gate for everyone
for the ``Retry-After`` time (else a backoff), and the request is sent again unless Stripe answered
``Stripe-Should-Retry: false``. The stripe package's own retries (``max_network_retries``: network
errors, 409, 5xx) call back into this client, so they are throttled too.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog
from aiolimiter import AsyncLimiter
from stripe import AIOHTTPClient

from otcommon.bus import Backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

_log = structlog.get_logger(__name__)

TOO_MANY_REQUESTS = 429


class RateGate:
    """A process-wide budget of requests per second that a 429 can close for a while."""

    def __init__(
        self,
        *,
        requests_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        # A one-second bucket of that size: no burst above the limit Stripe counts per second.
        self._limiter = AsyncLimiter(requests_per_second, time_period=1.0)
        self._clock = clock
        self._sleep = sleep
        self._closed_until = 0.0
        self.pauses = 0

    async def acquire(self) -> None:
        """Wait until a request may be sent."""
        while (wait := self._closed_until - self._clock()) > 0:
            await self._sleep(wait)
        await self._limiter.acquire()

    def close_for(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (after a 429)."""
        self.pauses += 1
        self._closed_until = max(self._closed_until, self._clock() + seconds)


class ThrottledHTTPClient(AIOHTTPClient):
    """The stripe package's aiohttp client, with every request through a RateGate and 429s retried."""

    def __init__(
        self,
        *,
        gate: RateGate,
        rate_limit_attempts: int = 8,
        backoff: Backoff | None = None,
        timeout_seconds: float = 30.0,
        on_response: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(timeout=timeout_seconds)
        if rate_limit_attempts < 1:
            raise ValueError("rate_limit_attempts must be at least 1")
        self._gate = gate
        self._rate_limit_attempts = rate_limit_attempts
        self._backoff = backoff or Backoff(initial_seconds=0.5, maximum_seconds=20.0)
        self._on_response = on_response
        self.requests_sent = 0
        self.rate_limited = 0

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """Send one request, waiting for the gate; resend a 429 that Stripe allows to be retried."""
        for attempt in range(1, self._rate_limit_attempts + 1):
            await self._gate.acquire()
            content, status, response_headers = await super().request_async(method, url, headers, post_data)
            self.requests_sent += 1
            if self._on_response is not None:
                self._on_response(method, status)
            if status != TOO_MANY_REQUESTS:
                return content, status, response_headers
            self.rate_limited += 1
            if response_headers.get("stripe-should-retry") == "false" or attempt == self._rate_limit_attempts:
                break
            delay = _retry_after_seconds(response_headers)
            if delay is None:
                delay = self._backoff.delay_seconds(attempt=attempt)
            _log.warning("stripe rate limited", attempt=attempt, delay_seconds=round(delay, 3))
            self._gate.close_for(delay)
        # The package turns the 429 into a RateLimitError; the gateway maps it to a retryable outcome.
        return content, status, response_headers


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
