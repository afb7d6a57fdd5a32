"""The real gateway and the enrichment against the Stripe sandbox, field by field with its ground truth."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from world import enricher_for

from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from enricher.findings import Findings
from enricher.routing import RouteType
from enricher.stripe_api import StripeApiGateway

pytestmark = pytest.mark.integration


def _mismatches(found: Findings, truth) -> list[str]:
    route = str(truth.route)
    expected = {
        "route": RouteType.PLATFORM if route == "platform" else RouteType.CONNECTED,
        "direct": route == "direct",
        "destination": None if route == "platform" else (truth.destination_account_id or truth.account_id),
        "charge": truth.charge_id,
        "intent": truth.payment_intent_id,
        "transfer": truth.transfer_id,
        "payout": truth.payout_id,
        "payout_status": truth.payout_status,
        "arrival": truth.payout_arrival_date,
        "deposit": truth.deposit_status,
    }
    actual = {
        "route": found.route.route_type,
        "direct": found.route.direct,
        "destination": found.route.destination_account_id,
        "charge": found.charge_id,
        "intent": found.payment_intent_id,
        "transfer": found.transfer_id,
        "payout": found.payout.payout_id,
        "payout_status": found.payout.payout_status,
        "arrival": found.payout.arrival_date,
        "deposit": found.deposit_status.value,
    }
    return [name for name in expected if expected[name] != actual[name]]


async def test_every_payment_of_the_sandbox_world_is_enriched_to_its_ground_truth():
    settings = StripeSandboxSettings(orders=400, rate_limit_per_second=10_000)
    async with run_stripe_sandbox(settings=settings) as sandbox:
        now = datetime.fromtimestamp(sandbox.state.scenario.now, UTC)
        gateway = StripeApiGateway(
            api_key=settings.secret_key,
            api_base=sandbox.base_url,
            requests_per_second=5_000,
            max_network_retries=2,
        )
        try:
            enricher = enricher_for(gateway, lambda: now)
            truths = sandbox.world.payments
            automatic_payouts = len(sandbox.world.payout_balance_transactions)
            results = await asyncio.gather(*(enricher.enrich(pid, requested_at=now) for pid in truths))
        finally:
            await gateway.close()
    wrong: Counter[str] = Counter()
    for result, truth in zip(results, truths.values(), strict=True):
        assert isinstance(result, Findings), result
        wrong.update(_mismatches(result, truth))
    assert dict(wrong) == {}
    routes = Counter(str(truth.route) for truth in truths.values())
    assert set(routes) == {"platform", "destination", "direct"}
    # Apart from one contents listing per automatic payout (no field links a balance transaction to its
    # payout), a handful of listings per account answered every payment.
    contents = gateway.calls.by_operation["balance_transactions.list"]
    assert contents <= automatic_payouts
    assert gateway.calls.total - contents < 4 * (len(sandbox.world.accounts) + 1)
