"""One rate gate for every Stripe request of the process, and the HTTP client that passes through it.

Stripe allows about 25 requests/s in test mode and 100 in live mode, per account key, counted over a
sliding one-second window; every request of the process, retries included, waits for one gate that
sends no more than that in any such window. A 429 (another client of the same key, or a limit lower
than configured) closes the gate for everyone for the ``Retry-After`` time (else a backoff), and the
request is sent again unless Stripe answered ``Stripe-Should-Retry: false``. The stripe package's own
retries (``max_network_retries``: network errors, 409, 5xx) call back into this client, so they are
throttled too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog
from stripe import AIOHTTPClient

from otcommon.bus import Backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

_log = structlog.get_logger(__name__)

TOO_MANY_REQUESTS = 429
DEFAULT_MARGIN_SECONDS = 0.025
"""Added to the one-second window: a request sent just over a second after another may arrive
within the same second of Stripe's count."""


class RateGate:
    """A process-wide budget of requests per second that a 429 can close for a while.

    Stripe counts requests per account over a sliding one-second window. The gate keeps the send
    times of the last ``capacity`` requests and lets a request go only when the oldest of them is
    more than a window (plus ``margin_seconds``, for the network's jitter between a send and its
    arrival) ago: no window of that length ever holds more than ``capacity`` sends, right after an
    idle moment as well (a leaky bucket of that capacity lets twice as many through in one second).
    Waiters go in arrival order, one at a time.
    """

    def __init__(
        self,
        *,
        requests_per_second: float,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        if margin_seconds < 0:
            raise ValueError("margin_seconds must not be negative")
        # Whole requests per second, rounded down (Stripe's limits are whole); below one a second,
        # one per 1/rate seconds.
        self.capacity = max(1, math.floor(requests_per_second))
        self.window_seconds = max(1.0, 1.0 / requests_per_second) + margin_seconds
        self._sent: deque[float] = deque(maxlen=self.capacity)
        self._turn = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep
        self._closed_until = 0.0
        self.pauses = 0
        self.closed_seconds = 0.0
        """How long 429s kept the gate closed in all (overlapping pauses counted once)."""

    async def acquire(self) -> None:
        """Wait until a request may be sent, and count it as sent now."""
        async with self._turn:
            while (wait := self._wait_seconds(self._clock())) > 0:
                await self._sleep(wait)
            self._sent.append(self._clock())

    def _wait_seconds(self, now: float) -> float:
        closed = self._closed_until - now
        full = self._sent[0] + self.window_seconds - now if len(self._sent) == self.capacity else 0.0
        return max(closed, full)

    def close_for(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (after a 429)."""
        self.pauses += 1
        now = self._clock()
        until = now + seconds
        if until > self._closed_until:
            self.closed_seconds += until - max(now, self._closed_until)
            self._closed_until = until


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
