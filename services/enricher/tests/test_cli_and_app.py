"""The command line, refresh-payouts and reindex on fakes, the app's health routes and consumer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_handler import PAYOUT_QUEUE, QUEUE, Setup, order, payout_changed
from world import DAY, NOW, T_NOW, facts_container, index_container

from enricher.__main__ import build_parser, main
from enricher.app import Enricher, create_app
from enricher.handler import PayoutChangeHandler
from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.refresh import refresh_open_payouts, reindex
from enricher.settings import EnricherSettings
from otcommon.messages import PaymentEnrichmentRequested, make_envelope
from otcommon.runtime import CONSUMER_GC_THRESHOLDS

if TYPE_CHECKING:
    from otcommon.bus import Delivery

ORG = "acct_org0000"
BASE_ENV = {
    "OT_COSMOS_CONNECTION_STRING": "AccountEndpoint=http://127.0.0.1:1/;AccountKey=a2V5;",
    "OT_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v;",
}


@pytest.mark.parametrize("command", ["serve", "enrich", "reindex", "refresh-payouts"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    assert "usage: python -m enricher" in capsys.readouterr().out


def test_enrich_refuses_what_is_not_a_payment_id(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["enrich", "po_123"])
    assert exited.value.code == 2
    assert "not a pi_... or ch_... id" in capsys.readouterr().err


def test_a_missing_stripe_key_stops_the_command_naming_the_variable(monkeypatch, capsys):
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OT_STRIPE_API_KEY", raising=False)
    assert main(["reindex"]) == 2
    assert "OT_STRIPE_API_KEY" in capsys.readouterr().err


def test_serve_collects_cycles_less_often_than_the_default(monkeypatch):
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OT_STRIPE_API_KEY", "sk_test_serve")
    seen: dict[str, object] = {}

    def run_app(app, **options):
        seen["thresholds"], seen["port"] = gc.get_threshold(), options["port"]

    monkeypatch.setattr("enricher.__main__.web.run_app", run_app)
    before = gc.get_threshold()
    try:
        assert main(["serve"]) == 0
    finally:
        gc.set_threshold(*before)
    # Serving hundreds of messages at once, the default thresholds walked the heap for a third of the CPU.
    assert seen["thresholds"] == CONSUMER_GC_THRESHOLDS
    assert CONSUMER_GC_THRESHOLDS[0] > before[0]
    assert seen["port"] == EnricherSettings().enricher_http_port


async def test_refresh_payouts_completes_a_payment_whose_payout_arrived():
    setup = Setup()
    charge_id, _, txn = setup.world.charge_on(ORG, available_on=T_NOW + DAY)
    await setup.store(order("t1", event="ev1", payment_id=charge_id))
    await setup.handler.enrich(charge_id, requested_at=NOW)
    assert (await setup.stored("t1", "ev1"))["depositStatus"] == "pending"

    setup.clock.advance(2 * DAY)
    payout_id = setup.world.pay_out([txn], on=ORG, created=T_NOW + DAY + 60)
    transactions = setup.transactions
    report = await refresh_open_payouts(
        transactions=transactions, handler=setup.handler, payouts=setup.payouts, clock=setup.clock
    )
    assert report.payments == 1
    assert report.by_outcome == {"paid": 1}
    stored = await setup.stored("t1", "ev1")
    assert (stored["depositStatus"], stored["stripePayoutId"]) == ("paid", payout_id)


async def test_reindex_lists_every_account_again():
    setup = Setup()
    index = StripeIndex(index_container(), facts=facts_container())
    indexer = Indexer(gateway=setup.world.stripe, index=index, clock=setup.clock)
    assert await reindex(indexer=indexer, account=None, clock=setup.clock) == [
        "platform", "acct_org0000", "acct_org0001", "acct_org0002"
    ]  # fmt: skip
    setup.clock.advance(1)
    assert await reindex(indexer=indexer, account=ORG, clock=setup.clock) == [ORG]
    listings = [account for account, _ in setup.world.stripe.charge_listings]
    assert listings.count(ORG) == 2
    assert setup.world.stripe.calls.by_operation["payouts.list"] == 5


async def test_the_app_serves_health_and_consumes_both_queues_until_it_stops():
    setup = Setup()
    _, intent_id, txn = setup.world.charge_on(None, available_on=T_NOW + DAY)
    await setup.store(order("t1", event="ev1", payment_id=intent_id))
    handled: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        try:
            await setup.handler(delivery)
        finally:
            handled.put_nowait(delivery)

    payout_handler = PayoutChangeHandler(payouts=setup.payouts)

    async def handle_payout(delivery: Delivery) -> None:
        try:
            await payout_handler(delivery)
        finally:
            handled.put_nowait(delivery)

    @contextlib.asynccontextmanager
    async def components(_settings):
        async def healthy() -> None:
            return None

        yield Enricher(
            gateway=setup.world.stripe,  # type: ignore[arg-type]
            indexer=None,  # type: ignore[arg-type]
            handler=handle,  # type: ignore[arg-type]
            payouts=setup.payouts,
            stripe_events_handler=handle_payout,  # type: ignore[arg-type]
            transactions=setup.transactions,
            source=lambda: setup.bus.source(queue=QUEUE),
            payout_source=lambda: setup.bus.source(queue=PAYOUT_QUEUE),
            health_checks={"cosmos": healthy},
        )

    settings = EnricherSettings.model_validate(
        {"cosmos_connection_string": BASE_ENV["OT_COSMOS_CONNECTION_STRING"],
         "servicebus_connection_string": BASE_ENV["OT_SERVICEBUS_CONNECTION_STRING"],
         "stripe_api_key": "sk_test_x"}
    )  # fmt: skip
    app = create_app(settings, open_components=components)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200
        message = PaymentEnrichmentRequested(
            payment_id=intent_id, transaction_id="t1", event_id="ev1", requested_at=NOW
        )
        await setup.bus.publisher(queue=QUEUE).publish([make_envelope(message)])
        await asyncio.wait_for(handled.get(), 10)
        assert (await setup.stored("t1", "ev1"))["depositStatus"] == "pending"
        # The same app consumes payout changes: the payout that now carries the payment is applied
        # (once the funds are available: an automatic payout carries only available funds).
        setup.clock.advance(2 * DAY)
        payout_id = setup.world.pay_out([txn], on=None, created=T_NOW + DAY + 60)
        changed = payout_changed(payout_id, status="paid", account=None)
        await setup.bus.publisher(queue=PAYOUT_QUEUE).publish([make_envelope(changed)])
        await asyncio.wait_for(handled.get(), 10)
    stored = await setup.stored("t1", "ev1")
    assert (stored["enrichmentState"], stored["depositStatus"]) == ("enriched", "paid")
    assert stored["stripePayoutId"] == payout_id
