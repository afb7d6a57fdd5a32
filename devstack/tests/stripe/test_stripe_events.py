"""Events as the world moves on with the clock, `GET /v1/events`, and signed webhook deliveries."""

from __future__ import annotations

import contextlib
import json
import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import stripe
from aiohttp import web

from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = pytest.mark.integration

# Three days and a bit: new sales, payouts created, sent and paid (or failed), forced refunds and disputes.
MOVE = {"minutes": 3 * 24 * 60 + 14 * 60, "refunds": 3, "disputes": 3}


def _move(sandbox: StripeSandboxHandle) -> None:
    sandbox.state.advance(**MOVE)


async def _all_events(
    api: Callable[..., Any], account: str | None = None, **params: str
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    query = {"limit": "100", **params}
    while True:
        answer = await api("/v1/events", params=query, account=account)
        assert answer.status == 200, answer.body
        events.extend(answer.body["data"])
        if not answer.body["has_more"]:
            return events
        query["starting_after"] = events[-1]["id"]


async def test_moving_the_clock_records_stripes_events(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    assert await _all_events(api) == []
    _move(sandbox)
    world = sandbox.world
    platform = await _all_events(api)
    connected = {
        account: await _all_events(api, account=account)
        for account in world.accounts
        if account != sandbox.platform_account_id
    }
    everything = platform + [event for events in connected.values() for event in events]
    kinds = Counter(event["type"] for event in everything)
    for kind in (
        "charge.succeeded",
        "payment_intent.succeeded",
        "charge.refunded",
        "refund.created",
        "charge.dispute.created",
        "payout.created",
        "payout.updated",
        "payout.paid",
        "transfer.created",
    ):
        assert kinds[kind] > 0, kind
    assert all("account" not in event for event in platform)
    for account, events in connected.items():
        assert all(event["account"] == account for event in events)
    for event in everything:
        obj = event["data"]["object"]
        assert world.owner[obj["id"]] == event.get("account", sandbox.platform_account_id)
        if event["type"].startswith("payout."):
            assert obj == world.payouts[obj["id"]]
        if event["type"] == "transfer.created":
            assert obj == world.transfers[obj["id"]]
        if event["type"] == "charge.refunded":
            assert obj["amount_refunded"] > 0
        if event["type"] == "payout.updated":
            assert event["data"]["previous_attributes"]["status"] != obj["status"]
    assert len({event["id"] for event in everything}) == len(everything)
    refunded = [e["data"]["object"] for e in everything if e["type"] == "charge.refunded"]
    assert any(charge["refunded"] for charge in refunded), "a full refund"
    assert any(not charge["refunded"] for charge in refunded), "a partial refund"


async def test_disputes_are_updated_then_closed_as_the_weeks_pass(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    start = sandbox.state.scenario.now
    _move(sandbox)
    opened = {d for d, dispute in sandbox.world.disputes.items() if dispute["created"] > start}
    assert opened
    for _ in range(4):
        sandbox.state.advance(minutes=7 * 24 * 60)
    events = [
        event
        for account in sandbox.world.accounts
        for event in await _all_events(api, account=account, type="charge.dispute.*")
    ]
    for dispute_id in opened:
        final = sandbox.world.disputes[dispute_id]
        assert final["status"] in {"won", "lost"}
        mine = [e for e in events if e["data"]["object"]["id"] == dispute_id]
        assert Counter(e["type"] for e in mine) == {
            "charge.dispute.created": 1,
            "charge.dispute.updated": 2,
            "charge.dispute.closed": 1,
        }
        statuses = [
            e["data"]["previous_attributes"]["status"] for e in mine if e["type"].endswith(".updated")
        ]
        assert sorted(statuses) == ["needs_response", "under_review"]


async def test_a_canceled_manual_payout_sends_payout_canceled(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    sandbox.state.advance(minutes=30 * 24 * 60)
    world = sandbox.world
    canceled = {p for p, payout in world.payouts.items() if payout["status"] == "canceled"}
    assert canceled
    events = [
        event
        for account in world.accounts
        for event in await _all_events(api, account=account, type="payout.canceled")
    ]
    assert {event["data"]["object"]["id"] for event in events} <= canceled
    assert events


async def test_events_filter_by_type_created_and_page(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient, api: Callable[..., Any]
) -> None:
    _move(sandbox)
    platform = await _all_events(api)
    payouts = await client.v1.events.list_async(params={"type": "payout.*", "limit": 100})
    assert {e.id for e in payouts.data} == {e["id"] for e in platform if e["type"].startswith("payout.")}
    both = await _all_events(api, **{"types[0]": "charge.refunded", "types[1]": "charge.dispute.created"})
    assert {e["id"] for e in both} == {
        e["id"] for e in platform if e["type"] in {"charge.refunded", "charge.dispute.created"}
    }
    created = platform[0]["created"]
    assert await _all_events(api, **{"created[gt]": str(created)}) == []
    assert await _all_events(api, limit="3") == platform
    one = await client.v1.events.retrieve_async(platform[0]["id"])
    assert one.type == platform[0]["type"]
    connected = next(a for a in sandbox.world.accounts if a != sandbox.platform_account_id)
    missing = await api(f"/v1/events/{platform[0]['id']}", account=connected)
    assert missing.status == 404


class Receiver:
    """A webhook endpoint that verifies each delivery's signature and can fail the first few."""

    def __init__(self, secret: str, *, failures: int = 0) -> None:
        self.secret = secret
        self.failures = failures
        self.received: list[stripe.Event] = []
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        payload = await request.read()
        # Raises (and so fails the delivery loudly) unless Stripe's own check accepts the signature.
        event = stripe.Webhook.construct_event(payload, request.headers["Stripe-Signature"], self.secret)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500)
        self.received.append(event)
        return web.Response(status=200)


@contextlib.asynccontextmanager
async def _serve(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        await runner.cleanup()
        sock.close()


async def test_events_are_delivered_signed_to_platform_and_connect_endpoints_with_retries(
    scenario_numbers: dict[str, int], http: Any
) -> None:
    platform_hook = Receiver("whsec_platform", failures=2)
    connect_hook = Receiver("whsec_connect")
    async with _serve(platform_hook) as platform_url, _serve(connect_hook) as connect_url:
        settings = StripeSandboxSettings(
            **scenario_numbers,
            webhook_url=platform_url,
            webhook_secret="whsec_platform",
            connect_webhook_url=connect_url,
            connect_webhook_secret="whsec_connect",
            webhook_retry_delays=(0.01, 0.01, 0.01),
        )
        async with run_stripe_sandbox(settings=settings) as sandbox:
            _move(sandbox)
            await sandbox.state.webhooks.drain()
            log = sandbox.state.events
            platform_ids = {i for i, e in log.events.items() if "account" not in e}
            connect_ids = set(log.events) - platform_ids
            assert platform_ids
            assert connect_ids
            assert {e.id for e in platform_hook.received} == platform_ids
            assert {e.id for e in connect_hook.received} == connect_ids
            assert all(e.account for e in connect_hook.received)
            # The first two deliveries were refused and retried.
            assert platform_hook.attempts == len(platform_ids) + 2
            assert all(log.delivery_succeeded(i) for i in log.events)
            async with http.get(
                f"{sandbox.base_url}/v1/events",
                params={"delivery_success": "false"},
                headers={"Authorization": f"Bearer {settings.secret_key}"},
            ) as response:
                assert (await response.json())["data"] == []


async def test_a_delivery_refused_every_time_is_given_up_and_reported(
    scenario_numbers: dict[str, int], http: Any
) -> None:
    refusing = Receiver("whsec_platform", failures=1_000_000)
    async with _serve(refusing) as url:
        settings = StripeSandboxSettings(
            **scenario_numbers,
            webhook_url=url,
            webhook_secret="whsec_platform",
            webhook_retry_delays=(0.01, 0.01),
        )
        async with run_stripe_sandbox(settings=settings) as sandbox:
            _move(sandbox)
            await sandbox.state.webhooks.drain()
            platform_ids = {i for i, e in sandbox.state.events.events.items() if "account" not in e}
            assert refusing.attempts == 3 * len(platform_ids)
            headers = {"Authorization": f"Bearer {settings.secret_key}"}
            async with http.get(
                f"{sandbox.base_url}/v1/events",
                params={"delivery_success": "false", "limit": "100"},
                headers=headers,
            ) as response:
                body = await response.json()
            assert {e["id"] for e in body["data"]} <= platform_ids
            assert body["data"]
            assert all(e["pending_webhooks"] == 0 for e in body["data"])
            async with http.get(f"{sandbox.base_url}/_sandbox/webhooks") as response:
                status = await response.json()
            assert status["outcomes"] == {"failed": len(platform_ids)}
            assert json.dumps(status).count("whsec") == 0
