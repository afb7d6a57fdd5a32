"""``replay --since``: the events the Stripe sandbox could not deliver, read back from its API
(``GET /v1/events?delivery_success=false``, the platform's and each connected account's) and applied.
"""

from __future__ import annotations

import calendar
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_applying import paid_by
from webhooks_fakes import container

from devstack.servicebus.testing import free_port
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import StripeSandboxHandle, run_stripe_sandbox
from devstack.stripe.webhooks import WebhookEndpoint
from otcommon.bus import InMemoryBus, Subscription, Topic, TrueFilter
from webhooks.__main__ import build_parser, instant, main
from webhooks.applier import StripeFactsApplier
from webhooks.journal import EventJournal
from webhooks.models import StripeEvent
from webhooks.processor import EventProcessor
from webhooks.recovery import Replay, ReplayTally, replay_undelivered
from webhooks.stripe_events import EventWindow, StripeEventsApi
from webhooks.transactions import PAYMENT_QUERY, TransactionFacts

if TYPE_CHECKING:
    from otcommon.store import InMemoryContainer

TOPIC = "transaction-changes"
PAYOUT_QUEUE = "stripe-events-queue"


@dataclass
class World:
    sandbox: StripeSandboxHandle
    transactions: InMemoryContainer
    events: InMemoryContainer
    bus: InMemoryBus
    processor: EventProcessor
    api: StripeEventsApi
    start: int
    first_advance_at: int

    def undelivered(self) -> set[str]:
        log = self.sandbox.state.events
        return {event_id for event_id in log.events if not log.delivery_succeeded(event_id)}

    def journal(self) -> dict[str, dict]:
        return {doc["id"]: doc for doc in self.events.documents()}

    async def replay(self, window: EventWindow, *, dry_run: bool = False) -> tuple[ReplayTally, list[str]]:
        lines: list[str] = []
        tally = await replay_undelivered(
            source=self.api,
            processor=self.processor,
            replay=Replay(window=window, livemode=False, dry_run=dry_run),
            progress=lines.append,
        )
        return tally, lines


def accepting_endpoint() -> web.Application:
    async def accept(_request: web.Request) -> web.Response:
        return web.json_response({"received": True})

    app = web.Application()
    app.router.add_post("/hook", accept)
    return app


@pytest.fixture
async def world():
    # Both endpoints refuse connections and Stripe gives up at once: every event is undelivered.
    dead = f"http://127.0.0.1:{free_port()}/api/webhooks/stripe"
    settings = StripeSandboxSettings(
        orders=300, events=3, organizers=3, seed=11, webhook_url=dead, connect_webhook_url=dead,
        webhook_retry_delays=(),
    )  # fmt: skip
    async with run_stripe_sandbox(settings=settings) as sandbox, TestServer(accepting_endpoint()) as live:
        state = sandbox.state
        transactions = container("transactions", **{PAYMENT_QUERY: paid_by})
        for row in state.scenario.transactions():  # what ingest stored before Stripe's changes
            if row["PaymentID"]:
                await transactions.create({k: row[k] for k in ("id", "eventId", "PaymentID", "TotalAmount")})
        start = state.scenario.now
        # The first hour's events reach an endpoint that answers 200: Stripe does not list them.
        dead_endpoints = list(state.webhooks.endpoints)
        state.webhooks.endpoints[:] = [
            WebhookEndpoint(str(live.make_url("/hook")), "whsec_live", connect=connect)
            for connect in (False, True)
        ]
        state.advance(minutes=60, refunds=3, disputes=2)
        await state.webhooks.drain()
        state.webhooks.endpoints[:] = dead_endpoints
        state.advance(minutes=60, refunds=6, disputes=4)
        first_advance_at = state.scenario.now
        state.advance(minutes=60, refunds=4, disputes=3)
        await state.webhooks.drain()
        events = container("webhook-journal")
        bus = InMemoryBus(
            topics=[Topic(name=TOPIC, subscriptions=(Subscription(name="all", rules=(TrueFilter(),)),))]
        )
        processor = EventProcessor(
            journal=EventJournal(events),
            applier=StripeFactsApplier(
                transactions=TransactionFacts(transactions),
                changes=bus.topic_publisher(topic=TOPIC),
                payouts=bus.publisher(queue=PAYOUT_QUEUE),
            ),
        )
        # Pages of three: paging is exercised on the platform's events and a connected account's.
        api = StripeEventsApi(
            api_key=settings.secret_key, api_base=sandbox.base_url, page_size=3, requests_per_second=20
        )
        try:
            yield World(sandbox, transactions, events, bus, processor, api, start, first_advance_at)
        finally:
            await api.close()


async def test_every_undelivered_event_of_the_platform_and_each_account_is_recorded_and_applied(world):
    undelivered = world.undelivered()
    assert len(world.sandbox.state.events.events) > len(undelivered)  # some were delivered
    accounts = Counter(world.sandbox.state.events.events[e].get("account") is None for e in undelivered)
    # Platform and Connect events, more than a page of them.
    assert accounts[True] > 3
    assert accounts[False] > 0
    tally, lines = await world.replay(EventWindow(since=world.start))
    journal = world.journal()
    assert set(journal) == undelivered
    assert tally.listed == tally.recorded_now == len(undelivered)
    assert all(doc["state"] in {"applied", "ignored"} for doc in journal.values())
    connect_records = [doc for doc in journal.values() if doc["account"] is not None]
    assert len(connect_records) == accounts[False]
    assert tally.ok
    assert lines[-1].startswith(f"total ({len(world.sandbox.world.accounts) - 1} connected accounts asked)")

    # Every refund and dispute the sandbox made after ingest is on its transaction.
    stripe_world = world.sandbox.world
    stored = {doc["PaymentID"]: doc for doc in world.transactions.documents()}
    by_charge = {facts.charge_id: facts.payment_id for facts in stripe_world.payments.values()}
    for event_id in undelivered:
        obj = world.sandbox.state.events.events[event_id]["data"]["object"]
        if obj["object"] == "refund":
            assert obj["id"] in stored[by_charge[obj["charge"]]]["stripeRefunds"]
        if obj["object"] == "dispute":
            dispute = stripe_world.disputes[obj["id"]]
            assert (
                stored[by_charge[obj["charge"]]]["stripeDisputes"][obj["id"]]["status"] == dispute["status"]
            )


async def test_a_second_replay_records_nothing_and_changes_nothing(world):
    await world.replay(EventWindow(since=world.start))
    before = {doc["id"]: doc["_etag"] for doc in world.transactions.documents()}
    announced = len(world.bus.active_messages(topic=TOPIC, subscription="all"))
    tally, _ = await world.replay(EventWindow(since=world.start))
    assert (tally.recorded_now, tally.recorded_before) == (0, len(world.undelivered()))
    assert {doc["id"]: doc["_etag"] for doc in world.transactions.documents()} == before
    assert len(world.bus.active_messages(topic=TOPIC, subscription="all")) == announced


async def test_a_dry_run_lists_and_changes_nothing(world):
    tally, lines = await world.replay(EventWindow(since=world.start), dry_run=True)
    assert tally.listed == tally.recorded_now == len(world.undelivered())
    assert world.journal() == {}
    assert all("stripeRefunds" not in doc for doc in world.transactions.documents())
    assert "not recorded yet" in lines[-1]


async def test_until_leaves_out_later_events(world):
    tally, _ = await world.replay(EventWindow(since=world.start, until=world.first_advance_at + 1))
    log = world.sandbox.state.events.events
    assert {log[e]["created"] for e in world.journal()} == {world.first_advance_at}
    assert 0 < tally.listed < len(world.undelivered())


async def test_an_event_delivered_meanwhile_is_recorded_before_and_applied_once(world):
    some = min(world.undelivered())
    payload = world.sandbox.state.events.events[some]
    assert (await world.processor.recover(StripeEvent.from_payload(payload)))[0] is True
    tally, _ = await world.replay(EventWindow(since=world.start))
    assert tally.recorded_before == 1
    assert tally.recorded_now == len(world.undelivered()) - 1


def test_dates_are_utc_unless_they_say_otherwise():
    assert instant("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert calendar.timegm(instant("2026-03-01T12:00:00+02:00").utctimetuple()) == 1772359200
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--since", "yesterday"])


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["replay"], "either EVENT_ID or --since"),
        (["replay", "evt_1", "--since", "2026-03-01"], "either EVENT_ID or --since"),
        (["replay", "evt_1", "--dry-run"], "go with --since"),
        (["replay", "--since", "2026-03-02", "--until", "2026-03-01"], "later than --since"),
    ],
    ids=["nothing", "both", "dry-run-of-one", "until-before-since"],
)
def test_replay_arguments_that_do_not_fit_are_a_usage_error(argv, problem, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert problem in capsys.readouterr().err


def test_replay_since_without_a_stripe_key_stops_with_the_variable_named(monkeypatch, capsys):
    monkeypatch.setenv("OT_COSMOS_CONNECTION_STRING", "AccountEndpoint=http://127.0.0.1:1/;AccountKey=a2V5;")
    monkeypatch.setenv(
        "OT_SERVICEBUS_CONNECTION_STRING",
        "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;",
    )
    monkeypatch.delenv("OT_STRIPE_API_KEY", raising=False)
    assert main(["replay", "--since", "2026-03-01"]) == 2
    assert "OT_STRIPE_API_KEY" in capsys.readouterr().err
