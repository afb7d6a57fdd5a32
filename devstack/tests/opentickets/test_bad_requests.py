"""Bad parameters get a 400 (or 404) problem+json that names the problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import aiohttp

    from devstack.opentickets.testing import SandboxHandle

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "case",
    [
        ("limit=0", 400, "limit"),
        ("limit=1001", 400, "limit"),
        ("limit=ten", 400, "limit"),
        ("limit=5&limit=6", 400, "limit"),
        ("updatedSince=yesterday", 400, "updatedSince"),
        ("updatedSince=2026-01-01T00:00:00", 400, "updatedSince"),
        ("cursor=not-a-cursor", 400, "cursor"),
        ("cursor=eyJ2IjogOX0", 400, "cursor"),
        ("updated_since=2026-01-01T00:00:00Z", 400, "updated_since"),
        ("eventId=ev_missing", 404, "Unknown event"),
    ],
)
async def test_bad_query_parameters(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str], case: tuple[str, int, str]
) -> None:
    query, status, title_part = case
    async with http.get(f"{sandbox.base_url}/v1/transactions?{query}", headers=api_key) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        body = await response.json()
    assert body["status"] == status
    assert title_part in body["title"]
    assert body["detail"]
    assert body["type"].startswith("https://opentickets.example/problems/")
    if status == 400:
        assert body["parameter"] == title_part
        slug = "invalid-cursor" if title_part == "cursor" else "invalid-parameter"
        assert body["type"].endswith(f"/{slug}")


async def test_unencoded_plus_in_offset_gets_a_hint(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    url = f"{sandbox.base_url}/v1/transactions?updatedSince=2026-01-01T00:00:00+00:00"
    async with http.get(url, headers=api_key) as response:
        assert response.status == 400
        assert "%2B" in (await response.json())["detail"]


async def test_cursor_cannot_be_reused_with_other_filters(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    async with http.get(f"{sandbox.base_url}/v1/transactions?limit=2", headers=api_key) as response:
        cursor = (await response.json())["nextCursor"]
    event_id = sandbox.scenario.event_ids()[0]
    params = {"cursor": cursor, "eventId": event_id}
    async with http.get(f"{sandbox.base_url}/v1/transactions", params=params, headers=api_key) as response:
        assert response.status == 400
        assert "other filters" in (await response.json())["detail"]


async def test_unknown_path_and_method_are_problems(
    sandbox: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sandbox.base_url}/v1/nothing") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
    async with http.delete(f"{sandbox.base_url}/v1/transactions") as response:
        assert response.status == 405
        assert response.content_type == "application/problem+json"
        assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sandbox/advance", {"minutes": -1}),
        ("/_sandbox/advance", {"hours": 1}),
        ("/_sandbox/advance", [1, 2]),
        ("/_sandbox/faults", {"rate_429": 2}),
        ("/_sandbox/faults", {"rate_429": 0.6, "rate_5xx": 0.6}),
        ("/_sandbox/faults", {"explode": True}),
    ],
)
async def test_bad_admin_bodies(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, path: str, body: object
) -> None:
    async with http.post(f"{sandbox.base_url}{path}", json=body) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"


async def test_admin_body_must_be_json(sandbox: SandboxHandle, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sandbox.base_url}/_sandbox/advance", data=b"{minutes") as response:
        assert response.status == 400
        assert "JSON" in (await response.json())["detail"]
