"""The rate limit, switchable faults and the request log, as clients and benchmarks see them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import stripe

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp

    from devstack.stripe.testing import ManualClock, StripeSandboxHandle

pytestmark = pytest.mark.integration


async def _control(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def test_the_rate_limit_answers_429_as_stripe_does(
    sandbox: StripeSandboxHandle, api: Callable[..., Any], http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    await _control(http, f"{sandbox.base_url}/_sandbox/rate-limit", {"per_second": 3})
    statuses = [(await api("/v1/account")).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await api("/v1/account")
    assert limited.status == 429
    assert limited.body["error"]["code"] == "rate_limit"
    assert limited.headers["Stripe-Should-Retry"] == "true"
    # Connected accounts share the platform's budget.
    connected = next(a for a in sandbox.world.accounts if a != sandbox.platform_account_id)
    assert (await api("/v1/account", account=connected)).status == 429
    clock.now += 1.0
    assert (await api("/v1/account")).status == 200


async def test_the_default_limit_is_25_per_second(
    sandbox_settings: Any, api: Callable[..., Any], sandbox: StripeSandboxHandle
) -> None:
    # The fixture raises the limit; the documented default is what a plain start gets.
    assert type(sandbox_settings)().rate_limit_per_second == 25
    sandbox.state.limiter.per_second = 25
    statuses = [(await api("/v1/account")).status for _ in range(26)]
    assert statuses.count(200) == 25
    assert statuses[-1] == 429


async def test_the_client_retries_a_rate_limited_call(
    sandbox: StripeSandboxHandle, make_client: Callable[..., stripe.StripeClient], http: aiohttp.ClientSession
) -> None:
    await _control(http, f"{sandbox.base_url}/_sandbox/faults", {"next_429": 1})
    with pytest.raises(stripe.RateLimitError):
        await make_client().v1.accounts.retrieve_current_async()
    await _control(http, f"{sandbox.base_url}/_sandbox/faults", {"next_429": 1})
    account = await make_client(max_network_retries=2).v1.accounts.retrieve_current_async()
    assert account.id == sandbox.platform_account_id


async def test_server_errors_and_drops_are_injected_and_retried(
    sandbox: StripeSandboxHandle, make_client: Callable[..., stripe.StripeClient], http: aiohttp.ClientSession
) -> None:
    await _control(http, f"{sandbox.base_url}/_sandbox/faults", {"next_5xx": 1})
    with pytest.raises(stripe.APIError) as failed:
        await make_client().v1.accounts.retrieve_current_async()
    assert failed.value.http_status == 503
    # aiohttp's client resends a GET once when a reused connection drops, so two drops reach the caller.
    await _control(http, f"{sandbox.base_url}/_sandbox/faults", {"next_drop": 2})
    with pytest.raises(stripe.APIConnectionError):
        await make_client().v1.accounts.retrieve_current_async()
    await _control(http, f"{sandbox.base_url}/_sandbox/faults", {"next_5xx": 1, "next_drop": 2})
    account = await make_client(max_network_retries=3).v1.accounts.retrieve_current_async()
    assert account.id == sandbox.platform_account_id
    async with http.get(f"{sandbox.base_url}/_sandbox/faults") as response:
        injected = (await response.json())["injected"]
    assert injected == {"5xx": 2, "drop": 4}


async def test_latency_is_switchable(sandbox: StripeSandboxHandle, http: aiohttp.ClientSession) -> None:
    answer = await _control(http, f"{sandbox.base_url}/_sandbox/faults", {"latency_ms": 5})
    assert answer["config"]["latency_ms"] == 5
    async with http.delete(f"{sandbox.base_url}/_sandbox/faults") as response:
        assert (await response.json())["config"]["latency_ms"] == 0


async def test_the_request_log_counts_calls_per_endpoint_account_and_status(
    sandbox: StripeSandboxHandle, api: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    connected = next(a for a in sandbox.world.accounts if a != sandbox.platform_account_id)
    world = sandbox.world
    charge = next(c for c in world.charges if world.owner[c] == sandbox.platform_account_id)
    await api("/v1/charges", params={"limit": "1"})
    await api("/v1/charges", params={"limit": "1"}, account=connected)
    await api(f"/v1/charges/{charge}")
    await api(f"/v1/charges/{charge}", key="sk_test_wrong_key_for_the_log")
    async with http.get(f"{sandbox.base_url}/_sandbox/requests") as response:
        log = await response.json()
    assert log["total"] == 4
    assert log["by_endpoint"] == {"GET /v1/charges": 2, "GET /v1/charges/{id}": 2}
    assert log["by_account"] == {sandbox.platform_account_id: 3, connected: 1}
    assert log["by_status"] == {"200": 3, "401": 1}
    assert log["by_account_endpoint"][connected] == {"GET /v1/charges": 1}
    async with http.delete(f"{sandbox.base_url}/_sandbox/requests") as response:
        assert (await response.json())["total"] == 0
