"""One rate gate for every Stripe request of the process, and the HTTP client that passes through it.

Stripe allows about 25 requests/s in test mode and 100 in live mode, per account key, counted over a
sliding one-second window; every request of the process, retries included, passes one gate that
lets no more than that reach Stripe in any such window. A 429 (another client of the same key, or a
limit lower than configured) closes the gate for everyone for the ``Retry-After`` time (else a
backoff), and the request is sent again unless Stripe answered ``Stripe-Should-Retry: false``.
The stripe package's own retries (``max_network_retries``: network errors, 409, 5xx) call back
into this client, so they are throttled too.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from typing import TYPE_CHECKING, Any

import structlog
from stripe import AIOHTTPClient

from enricher.gateway import call_priority
from otcommon.bus import Backoff

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

_log = structlog.get_logger(__name__)

TOO_MANY_REQUESTS = 429


class RateGate:
    """A process-wide budget of requests per second that a 429 can close for a while.

    Stripe counts requests per account over a sliding one-second window. The gate holds
    ``capacity`` slots: a request takes one to be sent, and gives it back when its answer has come;
    the slot is free again a window after that. Stripe counted the request at some moment between
    its send and its answer, so the next request on that slot reaches Stripe more than a window
    after it, however the network's delays vary: no window ever holds more than ``capacity`` of
    them, right after an idle moment as well (a leaky bucket of that capacity let twice as many
    through in one second). A slow answer costs its slot that time. Waiters go in the order of
    ``enricher.gateway.call_priority`` (calls asked ahead of need behind those a message waits
    for; the next page of the longest listing first), then in arrival order.
    """

    def __init__(
        self,
        *,
        requests_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        # Whole requests per second, rounded down (Stripe's limits are whole); below one a second,
        # one per 1/rate seconds.
        self.capacity = max(1, math.floor(requests_per_second))
        self.window_seconds = max(1.0, 1.0 / requests_per_second)
        self._free_at = [0.0] * self.capacity  # a heap: when each slot not in flight may be used
        self._returned = asyncio.Event()
        self._turn_taken = False
        # A heap of (priority, order, waiter): see ``enricher.gateway.call_priority``.
        self._waiting: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._clock = clock
        self._sleep = sleep
        self._closed_until = 0.0
        self.pauses = 0
        self.closed_seconds = 0.0
        """How long 429s kept the gate closed in all (overlapping pauses counted once)."""

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot, hold it while the request is sent and answered, then give it back."""
        priority, order = call_priority(), next(self._order)
        await self._wait_turn(priority, order)
        holding_turn = True
        try:
            while True:
                await self._take_slot()
                if not self._better_waiting(priority, order):
                    break
                # A call a message waits for came while this one waited: the slot is its.
                heapq.heappush(self._free_at, self._clock())
                holding_turn = False
                self._pass_turn()
                await self._wait_turn(priority, order)
                holding_turn = True
        finally:
            if holding_turn:
                self._pass_turn()
        try:
            yield
        finally:
            heapq.heappush(self._free_at, self._clock() + self.window_seconds)
            self._returned.set()

    async def _wait_turn(self, priority: tuple[int, int], order: int) -> None:
        if not self._turn_taken and not self._waiting:
            self._turn_taken = True
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, order, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._pass_turn()  # handed the turn, then cancelled before taking it
            else:
                waiter.cancel()  # left in the heap; passed over
            raise

    def _better_waiting(self, priority: tuple[int, int], order: int) -> bool:
        while self._waiting and self._waiting[0][2].done():
            heapq.heappop(self._waiting)  # a waiter that stopped waiting
        return bool(self._waiting) and self._waiting[0][:2] < (priority, order)

    def _pass_turn(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)  # the turn goes to it, still taken
                return
        self._turn_taken = False

    async def _take_slot(self) -> None:
        while True:
            now = self._clock()
            if self._closed_until > now:
                await self._sleep(self._closed_until - now)
            elif not self._free_at:  # every slot in flight
                self._returned.clear()
                await self._returned.wait()
            elif self._free_at[0] > now:
                # A slot given back meanwhile is free only later than this one.
                await self._sleep(self._free_at[0] - now)
            else:
                heapq.heappop(self._free_at)
                return

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
        on_response: Callable[[str, str, int], None] | None = None,
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
            async with self._gate.slot():
                content, status, response_headers = await super().request_async(
                    method, url, headers, post_data
                )
            self.requests_sent += 1
            if self._on_response is not None:
                self._on_response(method, url, status)
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
