"""Stripe's event list through the official ``stripe`` package: the source ``replay --since`` reads."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import stripe

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from stripe import RequestOptions
    from stripe.params import AccountListParams, EventListParams, EventListParamsCreated

PAGE_SIZE = 100
"""Stripe's largest list page."""


@dataclass(frozen=True, slots=True)
class EventWindow:
    """Events created at or after ``since`` and before ``until`` (Unix seconds; None: up to now)."""

    since: int
    until: int | None = None


class StripeEventsApi:
    """``GET /v1/accounts``; ``GET /v1/events?delivery_success=false`` for the platform and each account."""

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        max_network_retries: int = 3,
        timeout_seconds: float = 30.0,
        requests_per_second: float = 20.0,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = stripe.AIOHTTPClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            # A StripeClient retries nothing unless told: 429s (Stripe asks for a retry), 409s and 5xx.
            max_network_retries=max_network_retries,
            base_addresses={"api": api_base} if api_base else None,
        )
        self._page_size = page_size
        self._interval = 1.0 / requests_per_second
        self._clock = clock
        self._next_call_at = 0.0

    async def _paced(self) -> None:
        # Stripe allows about 25 requests/s in test mode and 100 live, for the whole account: a replay
        # walking many connected accounts must not take that budget from the running enricher.
        wait = self._next_call_at - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next_call_at = max(self._clock(), self._next_call_at) + self._interval

    async def connected_accounts(self) -> AsyncIterator[str]:
        """Every connected account's id, page by page."""
        starting_after: str | None = None
        while True:
            params: AccountListParams = {"limit": self._page_size}
            if starting_after:
                params["starting_after"] = starting_after
            await self._paced()
            page = await self._client.v1.accounts.list_async(params)
            for account in page.data:
                yield account.id
            if not page.has_more or not page.data:
                return
            starting_after = page.data[-1].id

    async def undelivered_events(
        self, *, account: str | None, window: EventWindow
    ) -> AsyncIterator[dict[str, Any]]:
        """Events of one account (None: the platform) that did not reach every endpoint, newest first.

        A Connect event lives on the connected account: Stripe lists it only under ``Stripe-Account``.
        """
        created: EventListParamsCreated = {"gte": window.since}
        if window.until is not None:
            created["lt"] = window.until
        options: RequestOptions = {"stripe_account": account} if account else {}
        starting_after: str | None = None
        while True:
            params: EventListParams = {
                "delivery_success": False,
                "created": created,
                "limit": self._page_size,
            }
            if starting_after:
                params["starting_after"] = starting_after
            await self._paced()
            page = await self._client.v1.events.list_async(params, options)
            for event in page.data:
                yield event.to_dict(for_json=True)
            if not page.has_more or not page.data:
                return
            starting_after = page.data[-1].id

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close_async()  # type: ignore[no-untyped-call]  # the package leaves it unannotated
