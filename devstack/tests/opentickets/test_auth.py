"""Client-credentials tokens, API keys, and 401s a client can act on."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import run_sandbox

if TYPE_CHECKING:
    import aiohttp

    from devstack.opentickets.testing import SandboxHandle

pytestmark = pytest.mark.integration

FORM = {"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}


async def _token(http: aiohttp.ClientSession, base_url: str) -> str:
    async with http.post(f"{base_url}/oauth/token", data=FORM) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    return str(body["access_token"])


async def test_bearer_token_reads_transactions(sandbox: SandboxHandle, http: aiohttp.ClientSession) -> None:
    token = await _token(http, sandbox.base_url)
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{sandbox.base_url}/v1/transactions", headers=headers) as response:
        assert response.status == 200
        assert len((await response.json())["data"]) == 100


async def test_basic_client_authentication_is_accepted(
    sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    credentials = base64.b64encode(b"sandbox-client:sandbox-secret").decode()
    headers = {"Authorization": f"Basic {credentials}"}
    data = {"grant_type": "client_credentials"}
    async with http.post(f"{sandbox.base_url}/oauth/token", data=data, headers=headers) as response:
        assert response.status == 200


async def test_api_key_reads_events(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    async with http.get(f"{sandbox.base_url}/v1/events", headers=api_key) as response:
        assert response.status == 200
        body = await response.json()
    assert [e["id"] for e in body["data"]] == sandbox.scenario.event_ids()
    assert body["nextCursor"] is None


@pytest.mark.parametrize(
    ("headers", "challenge_error"),
    [
        ({}, None),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"X-Api-Key": "wrong"}, None),
        ({"Authorization": "Basic c2FuZGJveC1jbGllbnQ6c2FuZGJveC1zZWNyZXQ="}, None),
    ],
)
async def test_missing_or_bad_credentials_get_401(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, headers: dict[str, str], challenge_error: str | None
) -> None:
    async with http.get(f"{sandbox.base_url}/v1/transactions", headers=headers) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        challenge = response.headers["WWW-Authenticate"]
        body = await response.json()
    assert challenge.startswith('Bearer realm="opentickets"')
    if challenge_error:
        assert f'error="{challenge_error}"' in challenge
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["type"].endswith("/unauthorized")


async def test_expired_token_gets_invalid_token_challenge(http: aiohttp.ClientSession) -> None:
    now = [1_000.0]
    async with run_sandbox(
        settings=SandboxSettings(orders=50, token_ttl=60), clock=lambda: now[0]
    ) as sandbox:
        token = await _token_with_ttl(http, sandbox.base_url, ttl=60)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{sandbox.base_url}/v1/events", headers=headers) as response:
            assert response.status == 200
        now[0] += 61
        async with http.get(f"{sandbox.base_url}/v1/events", headers=headers) as response:
            assert response.status == 401
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
            assert "expired" in (await response.json())["detail"]
        fresh = await _token_with_ttl(http, sandbox.base_url, ttl=60)
        async with http.get(
            f"{sandbox.base_url}/v1/events", headers={"Authorization": f"Bearer {fresh}"}
        ) as ok:
            assert ok.status == 200


async def _token_with_ttl(http: aiohttp.ClientSession, base_url: str, *, ttl: int) -> str:
    async with http.post(f"{base_url}/oauth/token", data=FORM) as response:
        body = await response.json()
    assert body["expires_in"] == ttl
    return str(body["access_token"])


async def test_expire_tokens_endpoint(sandbox: SandboxHandle, http: aiohttp.ClientSession) -> None:
    token = await _token(http, sandbox.base_url)
    async with http.post(f"{sandbox.base_url}/_sandbox/expire-tokens") as response:
        assert (await response.json())["expired"] >= 1
    async with http.get(
        f"{sandbox.base_url}/v1/events", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({**FORM, "client_secret": "wrong"}, 401, "invalid_client"),
        ({**FORM, "grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
        ({"client_id": "sandbox-client"}, 400, "invalid_request"),
    ],
)
async def test_token_endpoint_errors_follow_oauth2(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, form: dict[str, str], status: int, error: str
) -> None:
    async with http.post(f"{sandbox.base_url}/oauth/token", data=form) as response:
        assert response.status == status
        body = await response.json()
    assert body["error"] == error
    assert body["error_description"]


async def test_token_endpoint_needs_a_form(sandbox: SandboxHandle, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sandbox.base_url}/oauth/token", json=FORM) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
