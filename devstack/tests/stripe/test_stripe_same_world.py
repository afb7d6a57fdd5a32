"""The Stripe sandbox and the OpenTickets sandbox, given the same numbers, serve one world."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import api_key_headers, fetch_all_transactions, run_sandbox

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp
    import stripe

    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = pytest.mark.integration


async def _find(client: stripe.StripeClient, payment_id: str, account: str, platform: str) -> str:
    options: Any = {} if account == platform else {"stripe_account": account}
    if payment_id.startswith("pi_"):
        return (await client.v1.payment_intents.retrieve_async(payment_id, options=options)).id
    return (await client.v1.charges.retrieve_async(payment_id, options=options)).id


async def _check_every_payment(
    rows: list[dict[str, Any]], sandbox: StripeSandboxHandle, client: stripe.StripeClient, http: Any
) -> int:
    checked = 0
    for row in rows:
        payment_id = row["PaymentID"]
        if not payment_id:
            continue
        async with http.get(f"{sandbox.base_url}/_sandbox/payments/{payment_id}") as response:
            assert response.status == 200, payment_id
            facts = await response.json()
        assert facts["order_id"] == row["id"]
        found = await _find(client, payment_id, facts["account_id"], sandbox.platform_account_id)
        assert found == payment_id
        checked += 1
    return checked


async def test_every_payment_id_of_the_opentickets_sandbox_is_on_its_stripe_account(
    sandbox: StripeSandboxHandle,
    client: stripe.StripeClient,
    http: aiohttp.ClientSession,
    api: Callable[..., Any],
    scenario_numbers: dict[str, int],
) -> None:
    settings = SandboxSettings(**scenario_numbers)
    async with run_sandbox(settings=settings) as opentickets:
        headers = api_key_headers(settings)
        rows = await fetch_all_transactions(
            http, opentickets.base_url, headers=headers, params={"limit": "1000"}
        )
        assert await _check_every_payment(rows, sandbox, client, http) > 300
        # Both clocks moved by the same request body reveal the same new sales.
        body = {"minutes": 600, "refunds": 2, "disputes": 2}
        async with http.post(f"{opentickets.base_url}/_sandbox/advance", json=body) as response:
            moved = await response.json()
        async with http.post(f"{sandbox.base_url}/_sandbox/advance", json=body) as response:
            assert await response.json() == moved
        assert moved["newIds"]
        later = await fetch_all_transactions(
            http, opentickets.base_url, headers=headers, params={"updatedSince": "2026-03-01T12:00:00Z"}
        )
        changed = [row for row in later if row["id"] in set(moved["newIds"]) | set(moved["updatedIds"])]
        assert changed
        await _check_every_payment(changed, sandbox, client, http)
    unknown = await api("/v1/payment_intents/pi_1NotInTheScenario")
    assert unknown.status == 404


async def test_ground_truth_of_an_unknown_payment_is_a_404(
    sandbox: StripeSandboxHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sandbox.base_url}/_sandbox/payments/pi_1NotInTheScenario") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
    async with http.get(f"{sandbox.base_url}/_sandbox/payments") as response:
        listed = (await response.json())["data"]
    assert {p["payment_id"] for p in listed} == set(sandbox.world.payments)
    assert {p["deposit_status"] for p in listed} >= {"paid", "pending", "not_traceable"}
