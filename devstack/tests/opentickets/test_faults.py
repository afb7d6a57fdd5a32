"""Each fault behaves as configured, deterministically, switched at start or at run time."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aiohttp
import pytest
import yarl

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import api_key_headers, run_sandbox
from devstack.sandbox.faults import Fault, FaultConfig, FaultController

if TYPE_CHECKING:
    from devstack.opentickets.testing import SandboxHandle


async def _raw_status(sandbox: SandboxHandle, path: str = "/v1/transactions?limit=1") -> int:
    """Status of one GET on a fresh connection, or 0 when the server closed it without answering.

    aiohttp's client retries an idempotent request once when the connection drops, which would hide
    a single dropped connection; a raw request shows exactly what the server did.
    """
    url = yarl.URL(sandbox.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {url.host}\r\nX-Api-Key: {sandbox.settings.api_key}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1]) if status_line else 0


async def _set_faults(http: aiohttp.ClientSession, sandbox: SandboxHandle, **changes: object) -> dict:
    async with http.post(f"{sandbox.base_url}/_sandbox/faults", json=changes) as response:
        assert response.status == 200
        return dict(await response.json())


async def _status(http: aiohttp.ClientSession, sandbox: SandboxHandle, api_key: dict[str, str]) -> int:
    async with http.get(f"{sandbox.base_url}/v1/transactions?limit=1", headers=api_key) as response:
        await response.read()
        return response.status


@pytest.mark.integration
async def test_next_429_answers_with_retry_after(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    await _set_faults(http, sandbox, next_429=2, retry_after_s=7)
    for _ in range(2):
        async with http.get(f"{sandbox.base_url}/v1/transactions", headers=api_key) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "7"
            assert response.content_type == "application/problem+json"
    assert await _status(http, sandbox, api_key) == 200


@pytest.mark.integration
async def test_next_5xx_uses_the_configured_status(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    await _set_faults(http, sandbox, next_5xx=1, status_5xx=502)
    assert await _status(http, sandbox, api_key) == 502
    assert await _status(http, sandbox, api_key) == 200


@pytest.mark.integration
async def test_next_drop_closes_the_connection_without_a_response(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    await _set_faults(http, sandbox, next_drop=3)
    assert await _raw_status(sandbox, "/v1/events") == 0
    # aiohttp's client retries a dropped GET once, so two drops in a row reach the caller.
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _status(http, sandbox, api_key)
    assert await _status(http, sandbox, api_key) == 200
    async with http.get(f"{sandbox.base_url}/_sandbox/faults") as response:
        assert (await response.json())["injected"] == {"drop": 3}


@pytest.mark.integration
async def test_next_expired_token_rejects_a_valid_token_once(
    sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
    }
    async with http.post(f"{sandbox.base_url}/oauth/token", data=form) as response:
        token = (await response.json())["access_token"]
    await _set_faults(http, sandbox, next_expired_token=1)
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{sandbox.base_url}/v1/events", headers=headers) as response:
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # The token stays expired, as a real one would; a new one works.
    async with http.get(f"{sandbox.base_url}/v1/events", headers=headers) as response:
        assert response.status == 401
    async with http.post(f"{sandbox.base_url}/oauth/token", data=form) as response:
        fresh = (await response.json())["access_token"]
    async with http.get(
        f"{sandbox.base_url}/v1/events", headers={"Authorization": f"Bearer {fresh}"}
    ) as response:
        assert response.status == 200


@pytest.mark.integration
async def test_latency_delays_api_requests(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    await _set_faults(http, sandbox, latency_ms=300)
    started = time.monotonic()
    assert await _status(http, sandbox, api_key) == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.integration
async def test_seeded_rates_repeat_the_same_fault_sequence(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    sequences = []
    for _ in range(2):
        await _set_faults(http, sandbox, rate_429=0.2, rate_5xx=0.2, rate_drop=0.1, seed=99)
        sequences.append([await _raw_status(sandbox) for _ in range(40)])
    assert sequences[0] == sequences[1]
    assert {0, 200, 429, 503} == set(sequences[0])


@pytest.mark.integration
async def test_faults_spare_the_token_endpoint_and_controls(
    sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    await _set_faults(http, sandbox, rate_5xx=1.0)
    form = {
        "grant_type": "client_credentials",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
    }
    async with http.post(f"{sandbox.base_url}/oauth/token", data=form) as response:
        assert response.status == 200
    async with http.get(f"{sandbox.base_url}/healthz") as response:
        assert response.status == 200
    async with http.delete(f"{sandbox.base_url}/_sandbox/faults") as response:
        assert (await response.json())["config"] == FaultConfig().model_dump()


@pytest.mark.integration
async def test_faults_from_start_up_settings(http: aiohttp.ClientSession) -> None:
    settings = SandboxSettings(orders=20, fault_rate_429=1.0, latency_ms=5)
    async with run_sandbox(settings=settings) as sandbox:
        async with http.get(f"{sandbox.base_url}/_sandbox/faults") as response:
            config = (await response.json())["config"]
        assert config["rate_429"] == 1.0
        assert config["latency_ms"] == 5
        assert await _status(http, sandbox, api_key_headers(settings)) == 429
        async with http.post(f"{sandbox.base_url}/_sandbox/reset") as response:
            assert response.status == 200
        # Reset goes back to the start-up faults, not to none.
        assert await _status(http, sandbox, api_key_headers(settings)) == 429


def test_counters_take_precedence_over_rates() -> None:
    controller = FaultController(FaultConfig(rate_5xx=1.0, next_429=1, next_drop=1))
    assert [controller.next_request_fault() for _ in range(3)] == [
        Fault.DROP,
        Fault.TOO_MANY_REQUESTS,
        Fault.SERVER_ERROR,
    ]
    assert controller.config.next_429 == 0
