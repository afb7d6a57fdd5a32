"""Keyset paging: every row exactly once, filters, and stability while data change."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from devstack.opentickets.testing import fetch_all_transactions
from devstack.scenario import EXPORT_COLUMNS

if TYPE_CHECKING:
    import aiohttp

    from devstack.opentickets.testing import SandboxHandle

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
async def test_paging_returns_every_row_exactly_once(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str], limit: int
) -> None:
    rows = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": str(limit)})
    expected = {row["id"]: row for row in sandbox.scenario.transactions()}
    assert len(rows) == len(expected) == 600
    assert {row["id"]: row for row in rows} == expected
    keys = [(row["updatedAt"], row["id"]) for row in rows]
    assert keys == sorted(keys)


async def test_rows_have_export_fields_then_api_fields(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    async with http.get(f"{sandbox.base_url}/v1/transactions?limit=3", headers=api_key) as response:
        body = await response.json()
    assert len(body["data"]) == 3
    assert isinstance(body["nextCursor"], str)
    for row in body["data"]:
        assert list(row) == [*EXPORT_COLUMNS, "id", "eventId", "updatedAt"]


async def test_updated_since_and_event_filters(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    everything = list(sandbox.scenario.transactions())
    since = sorted(row["updatedAt"] for row in everything)[len(everything) // 2]
    event_id = sandbox.scenario.event_ids()[2]
    cases = [
        ({"updatedSince": since}, [r for r in everything if r["updatedAt"] >= since]),
        ({"eventId": event_id}, [r for r in everything if r["eventId"] == event_id]),
        (
            {"eventId": event_id, "updatedSince": since.replace("Z", "+00:00")},
            [r for r in everything if r["eventId"] == event_id and r["updatedAt"] >= since],
        ),
    ]
    for params, expected in cases:
        rows = await fetch_all_transactions(
            http, sandbox.base_url, headers=api_key, params={**params, "limit": "13"}
        )
        assert expected
        assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in expected)


async def test_updated_since_with_an_offset_is_converted_to_utc(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    # 2026-01-01T00:00:00Z written in New York time.
    params = {"updatedSince": "2025-12-31T19:00:00-05:00", "limit": "1000"}
    rows = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params=params)
    expected = [r for r in sandbox.scenario.transactions() if r["updatedAt"] >= "2026-01-01T00:00:00Z"]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in expected)


async def test_paging_stays_stable_while_the_scenario_advances(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    initial = {row["id"] for row in sandbox.scenario.transactions()}
    changed: set[str] = set()

    def advance() -> None:
        changes = sandbox.advance(minutes=20, refunds=2, scans=2)
        changed.update(changes.changed_ids)

    rows = await fetch_all_transactions(
        http, sandbox.base_url, headers=api_key, params={"limit": "40"}, between_pages=advance
    )
    assert changed, "the scenario changed during paging"
    seen = [row["id"] for row in rows]
    # Nothing is skipped, and a row is repeated only because it changed after it was read.
    assert set(seen) == initial | changed
    repeats = {order_id for order_id in seen if seen.count(order_id) > 1}
    assert repeats <= changed
    latest = {row["id"]: row for row in rows}
    assert latest == {row["id"]: row for row in sandbox.scenario.transactions()}


async def test_incremental_sync_from_the_last_updated_at(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    first = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": "500"})
    checkpoint = max(row["updatedAt"] for row in first)
    changes = sandbox.advance(minutes=90, refunds=3, disputes=1, scans=3)
    delta = await fetch_all_transactions(
        http, sandbox.base_url, headers=api_key, params={"updatedSince": checkpoint, "limit": "50"}
    )
    delta_ids = {row["id"] for row in delta}
    assert set(changes.changed_ids) <= delta_ids
    # updatedSince is inclusive: rows at exactly the checkpoint come again, nothing older does.
    assert all(row["updatedAt"] >= checkpoint for row in delta)
    assert delta_ids - set(changes.changed_ids) == {r["id"] for r in first if r["updatedAt"] == checkpoint}


async def test_admin_advance_and_reset(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    before = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": "1000"})
    async with http.post(
        f"{sandbox.base_url}/_sandbox/advance", json={"minutes": 120, "refunds": 2}
    ) as response:
        assert response.status == 200
        body = await response.json()
    assert body["newIds"]
    assert len(body["updatedIds"]) >= 2
    after = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": "1000"})
    assert len(after) == len(before) + len(body["newIds"])
    assert after[-1]["updatedAt"] <= body["now"]

    async with http.post(f"{sandbox.base_url}/_sandbox/reset") as response:
        assert (await response.json())["orders"] == 600
    again = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": "1000"})
    assert again == before


async def test_index_catches_up_with_changes_made_directly_on_the_scenario(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    sandbox.scenario.advance(minutes=45, refunds=2)
    sandbox.advance(minutes=45, scans=2)
    rows = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": "1000"})
    assert {row["id"]: row for row in rows} == {row["id"]: row for row in sandbox.scenario.transactions()}
