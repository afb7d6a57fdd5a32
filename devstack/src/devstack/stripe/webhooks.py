"""Webhook delivery, signed as Stripe signs, with retries.

Platform events go to the platform endpoints, Connect events (those with `account`) to the Connect
endpoints. Each delivery is `POST` of the event's JSON with `Stripe-Signature: t=<unix>,v1=<hex
HMAC-SHA256 of "<t>.<body>" under the endpoint's secret>`, the header `stripe.Webhook.construct_event`
verifies. A delivery that is not answered with a 2xx is retried after each of the configured delays, then
given up (the event's delivery then counts as failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.stripe.events import EventLog

log = logging.getLogger(__name__)
DELIVERY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where events go: a URL, its signing secret, and whether it takes Connect events."""

    url: str
    secret: str
    connect: bool = False

    @property
    def name(self) -> str:
        """How deliveries name the endpoint (never with its secret)."""
        return f"{'connect' if self.connect else 'platform'} {self.url}"

    def takes(self, event: dict[str, Any]) -> bool:
        """Whether this endpoint receives `event`."""
        return ("account" in event) == self.connect


def signature_header(payload: bytes, *, secret: str, timestamp: int) -> str:
    """Stripe's `Stripe-Signature` for `payload` signed at `timestamp`."""
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


class WebhookDeliverer:
    """Sends each new event to the endpoints that take it, retrying failed deliveries."""

    def __init__(
        self,
        *,
        events: EventLog,
        endpoints: list[WebhookEndpoint],
        retry_delays: tuple[float, ...],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.events = events
        self.endpoints = list(endpoints)
        self.retry_delays = retry_delays
        self.attempts: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self._wall_clock = wall_clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, session: aiohttp.ClientSession) -> None:
        """Deliver through `session` from now on."""
        self._session = session

    async def stop(self) -> None:
        """Cancel the deliveries in flight (they stay pending)."""
        self._session = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drain(self) -> None:
        """Wait until every delivery started so far has succeeded or been given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def enqueue(self, event: dict[str, Any]) -> None:
        """Start delivering `event` to every endpoint that takes it."""
        targets = [endpoint for endpoint in self.endpoints if endpoint.takes(event)]
        if not targets:
            return
        self.events.pending[event["id"]] = {endpoint.name for endpoint in targets}
        if self._session is None:
            log.warning("webhook deliveries are not running; event %s stays pending", event["id"])
            return
        for endpoint in targets:
            task = asyncio.create_task(self._deliver(self._session, endpoint, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, session: aiohttp.ClientSession, endpoint: WebhookEndpoint, event: dict[str, Any]
    ) -> None:
        for attempt, delay in enumerate((0.0, *self.retry_delays), start=1):
            if delay:
                await asyncio.sleep(delay)  # Stripe's backoff between attempts
            if await self._attempt(session, endpoint, event, attempt=attempt):
                self.events.pending.get(event["id"], set()).discard(endpoint.name)
                self.outcomes["delivered"] += 1
                return
        self.events.pending.get(event["id"], set()).discard(endpoint.name)
        self.events.failed.setdefault(event["id"], set()).add(endpoint.name)
        self.outcomes["failed"] += 1

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        endpoint: WebhookEndpoint,
        event: dict[str, Any],
        *,
        attempt: int,
    ) -> bool:
        self.attempts[endpoint.name] += 1
        served = {
            **self.events.served(event),
            "pending_webhooks": len(self.events.pending.get(event["id"], ())),
        }
        payload = json.dumps(served).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(
                payload, secret=endpoint.secret, timestamp=int(self._wall_clock())
            ),
        }
        try:
            async with session.post(
                endpoint.url,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S),
            ) as response:
                delivered = 200 <= response.status < 300  # noqa: PLR2004
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("webhook %s to %s failed (attempt %d): %s", event["id"], endpoint.name, attempt, error)
            return False
        if not delivered:
            log.info(
                "webhook %s to %s answered %d (attempt %d)",
                event["id"],
                endpoint.name,
                response.status,
                attempt,
            )
        return delivered
