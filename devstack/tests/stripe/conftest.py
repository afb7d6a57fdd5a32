"""Fixtures: an in-process Stripe sandbox on a free port, the official `stripe` client and plain HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import stripe

from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import ManualClock, StripeSandboxHandle, run_stripe_sandbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

# Small enough to build in well under a second, large enough for every route, payout status and a
# manual-payout organizer (the scenario tests pin that these seeds contain them).
SCENARIO = {"seed": 5, "orders": 400, "events": 4, "organizers": 3}


@pytest.fixture
def scenario_numbers() -> dict[str, int]:
    """What both sandboxes are given to build the same world."""
    return dict(SCENARIO)


@pytest.fixture
def clock() -> ManualClock:
    """The rate limit's clock: its window moves only when a test moves it, never by sleeping."""
    return ManualClock()


@pytest.fixture
def sandbox_settings() -> StripeSandboxSettings:
    # A limit the tests never reach unless they lower it on purpose.
    return StripeSandboxSettings(**SCENARIO, rate_limit_per_second=100_000)


@pytest.fixture
async def sandbox(
    sandbox_settings: StripeSandboxSettings, clock: ManualClock
) -> AsyncIterator[StripeSandboxHandle]:
    async with run_stripe_sandbox(settings=sandbox_settings, clock=clock) as handle:
        yield handle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_client(
    sandbox: StripeSandboxHandle, http: aiohttp.ClientSession
) -> Callable[..., stripe.StripeClient]:
    """A `StripeClient` on the sandbox, over the test's aiohttp session (closed with it)."""

    def make(*, api_key: str | None = None, max_network_retries: int = 0) -> stripe.StripeClient:
        return stripe.StripeClient(
            api_key or sandbox.settings.secret_key,
            base_addresses={"api": sandbox.base_url},
            http_client=stripe.AIOHTTPClient(session=http),
            max_network_retries=max_network_retries,
        )

    return make


@pytest.fixture
def client(make_client: Callable[..., stripe.StripeClient]) -> stripe.StripeClient:
    return make_client()


@dataclass(frozen=True)
class Answer:
    """One raw HTTP answer."""

    status: int
    body: Any
    headers: dict[str, str]


@pytest.fixture
def api(sandbox: StripeSandboxHandle, http: aiohttp.ClientSession) -> Callable[..., Any]:
    """`await api(path, params=..., account=..., key=...)`: a raw GET on the sandbox."""

    async def get(
        path: str,
        *,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
        account: str | None = None,
        key: str | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {key or sandbox.settings.secret_key}"}
        if account is not None:
            headers["Stripe-Account"] = account
        async with http.get(f"{sandbox.base_url}{path}", params=params, headers=headers) as response:
            return Answer(response.status, await response.json(), dict(response.headers))

    return get
