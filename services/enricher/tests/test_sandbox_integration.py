"""The real gateway and the enrichment against the Stripe sandbox, field by field with its ground truth."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from test_handler import order, transactions_container
from world import enricher_for

from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from enricher.findings import Findings
from enricher.gateway import StripeAccessDeniedError
from enricher.handler import EnrichmentHandler
from enricher.routing import RouteType
from enricher.stripe_api import StripeApiGateway
from enricher.writer import EnrichmentWriter
from otcommon.bus import Delivery, PermanentError
from otcommon.messages import PaymentEnrichmentRequested, make_envelope

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


async def _enrich_world(settings: StripeSandboxSettings, *, requests_per_second: float, retries: int = 2):
    """Enrich every payment of the sandbox's world.

    (results, truths, gateway, automatic payout count, the sandbox's answers counted by status)
    """
    async with run_stripe_sandbox(settings=settings) as sandbox:
        now = datetime.fromtimestamp(sandbox.state.scenario.now, UTC)
        gateway = StripeApiGateway(
            api_key=settings.secret_key,
            api_base=sandbox.base_url,
            requests_per_second=requests_per_second,
            max_network_retries=retries,
        )
        try:
            enricher = enricher_for(gateway, lambda: now)
            truths = sandbox.world.payments
            results = await asyncio.gather(*(enricher.enrich(pid, requested_at=now) for pid in truths))
        finally:
            await gateway.close()
        statuses = Counter(sandbox.state.requests.by_status)
        return results, truths, gateway, len(sandbox.world.payout_balance_transactions), statuses


def _wrong_fields(results, truths) -> dict[str, int]:
    wrong: Counter[str] = Counter()
    for result, truth in zip(results, truths.values(), strict=True):
        assert isinstance(result, Findings), result
        wrong.update(_mismatches(result, truth))
    return dict(wrong)


async def test_every_payment_of_the_sandbox_world_is_enriched_to_its_ground_truth():
    settings = StripeSandboxSettings(orders=400, rate_limit_per_second=10_000)
    results, truths, gateway, automatic_payouts, _ = await _enrich_world(settings, requests_per_second=5_000)
    assert _wrong_fields(results, truths) == {}
    routes = Counter(str(truth.route) for truth in truths.values())
    assert set(routes) == {"platform", "destination", "separate_transfer", "direct"}
    # The connected accounts' listings linked every separate transfer to its charge.
    assert "transfers.list" not in gateway.calls.by_operation
    # Apart from one contents listing per automatic payout (no field links a balance transaction to its
    # payout), a handful of listings per account answered every payment.
    contents = gateway.calls.by_operation["balance_transactions.list"]
    assert contents <= automatic_payouts
    assert gateway.calls.total - contents < 4 * (len({t.account_id for t in truths.values()}) + 1)


@pytest.mark.parametrize(
    ("faults", "served"),
    [
        pytest.param({"rate_limit_per_second": 40}, {"429"}, id="429 bursts"),
        pytest.param({"fault_rate_5xx": 0.2, "fault_seed": 3}, {"500", "502", "503"}, id="5xx"),
        pytest.param({"drop_rate": 0.1, "fault_seed": 5}, {"dropped"}, id="dropped connections"),
        pytest.param({"latency_ms": 20}, set(), id="latency"),
    ],
)
async def test_faults_cost_retries_not_answers(faults, served):
    settings = StripeSandboxSettings(orders=120, **{"rate_limit_per_second": 10_000, **faults})
    # The gate is set far above the sandbox's limit, so every 429 is the sandbox's and must be waited out.
    results, truths, gateway, _, statuses = await _enrich_world(
        settings, requests_per_second=1_000, retries=6
    )
    assert _wrong_fields(results, truths) == {}
    # The fault really was served (the answers above were earned through it, not around it).
    if served:
        assert sum(statuses[status] for status in served) > 0, statuses
    if "rate_limit_per_second" in faults:
        assert gateway._http.rate_limited > 0


async def test_a_burst_through_the_gate_at_the_sandboxs_own_limit_gets_no_429():
    settings = StripeSandboxSettings(orders=20)  # the sandbox's default limit: 25 requests/s, as Stripe's
    async with run_stripe_sandbox(settings=settings) as sandbox:
        gateway = StripeApiGateway(
            api_key=settings.secret_key,
            api_base=sandbox.base_url,
            requests_per_second=settings.rate_limit_per_second,
            max_network_retries=0,
        )
        try:
            # Three seconds' worth at once, after an idle moment: the gate must not burst above the limit.
            answers = await asyncio.gather(
                *(gateway.retrieve_platform_account() for _ in range(3 * settings.rate_limit_per_second))
            )
        finally:
            await gateway.close()
        statuses = dict(sandbox.state.requests.by_status)
    assert {answer["id"] for answer in answers} == {sandbox.platform_account_id}
    assert statuses == {"200": 3 * settings.rate_limit_per_second}
    assert gateway._http.rate_limited == 0


async def test_a_revoked_key_is_access_denied():
    settings = StripeSandboxSettings(orders=20)
    async with run_stripe_sandbox(settings=settings) as sandbox:
        sandbox.state.keys.revoke(settings.secret_key)
        gateway = StripeApiGateway(
            api_key=settings.secret_key, api_base=sandbox.base_url, max_network_retries=1
        )
        try:
            with pytest.raises(StripeAccessDeniedError) as raised:
                await gateway.retrieve_platform_account()
        finally:
            await gateway.close()
    assert raised.value.status == 401


@pytest.fixture(scope="module")
def metric_reader() -> InMemoryMetricReader:
    """The process's meter provider, read in memory (the enricher's counters are created at import)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def permanent_failures(reader: InMemoryMetricReader) -> dict[str, int]:
    """``enricher.permanent_failures`` so far, by reason."""
    counted: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "enricher.permanent_failures":
                    for point in metric.data.data_points:
                        counted[str(point.attributes["reason"])] = int(point.value)
    return counted


async def test_a_revoked_key_is_a_permanent_failure_with_an_alert_metric(metric_reader):
    settings = StripeSandboxSettings(orders=20)
    transactions = transactions_container()
    await transactions.create(order("t1", event="ev1", payment_id="pi_1Any"))
    before = permanent_failures(metric_reader).get("StripeAccessDenied", 0)
    async with run_stripe_sandbox(settings=settings) as sandbox:
        now = datetime.fromtimestamp(sandbox.state.scenario.now, UTC)
        sandbox.state.keys.revoke(settings.secret_key)
        gateway = StripeApiGateway(api_key=settings.secret_key, api_base=sandbox.base_url)
        handler = EnrichmentHandler(
            enricher=enricher_for(gateway, lambda: now),
            writer=EnrichmentWriter(transactions),
            announcer=None,
            clock=lambda: now,
        )
        request = PaymentEnrichmentRequested(
            payment_id="pi_1Any", transaction_id="t1", event_id="ev1", requested_at=now
        )
        try:
            with pytest.raises(PermanentError) as raised:
                await handler(Delivery(envelope=make_envelope(request), delivery_count=1))
        finally:
            await gateway.close()
    assert raised.value.reason == "StripeAccessDenied"
    assert "status 401" in str(raised.value)
    assert permanent_failures(metric_reader).get("StripeAccessDenied", 0) == before + 1
    assert (await transactions.read("t1", partition_key="ev1"))["enrichmentState"] == "queued"
