"""Stripe's own sandbox controls (no key needed): rate limit, keys, request log, webhooks and ground truth.

The clock, the faults and /healthz are the controls both sandboxes share (`devstack.sandbox.controls`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from devstack.stripe.appkeys import STATE_KEY
from devstack.stripe.webhooks import WebhookEndpoint
from otcommon.http import NotFoundError, parse_json_body

if TYPE_CHECKING:
    from devstack.scenario import PaymentFacts
    from devstack.stripe.state import StripeSandboxState

admin_routes = web.RouteTableDef()


class RateLimitRequest(BaseModel):
    """Body of `POST /_sandbox/rate-limit`."""

    model_config = ConfigDict(extra="forbid")

    per_second: int = Field(ge=1, le=100_000)


class WebhookRequest(BaseModel):
    """Body of `POST /_sandbox/webhooks`: one more endpoint."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=1)
    connect: bool = False


class KeyRequest(BaseModel):
    """Body of `POST /_sandbox/keys/revoke`."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)


def _state(request: web.Request) -> StripeSandboxState:
    return request.app[STATE_KEY]


def payment_facts_json(facts: PaymentFacts) -> dict[str, Any]:
    """The ground truth of one payment, as `GET /_sandbox/payments/{id}` answers it."""
    return {**dataclasses.asdict(facts), "route": str(facts.route)}


@admin_routes.get("/_sandbox/state")
async def describe(request: web.Request) -> web.Response:
    """Clock, sizes, platform account, keys and rate limit."""
    state = _state(request)
    world = state.view.world
    return web.json_response(
        {
            "now": state.scenario.now_iso,
            "seed": state.scenario.seed,
            "platform_account": state.platform_account_id,
            "accounts": len(world.accounts),
            "payments": len(world.payments),
            "payouts": len(world.payouts),
            "rate_limit_per_second": state.limiter.per_second,
            "keys": {key.kind.value: key.value for key in state.keys.keys},
            "revoked_keys": sorted(state.keys.revoked),
        }
    )


@admin_routes.get("/_sandbox/requests")
async def get_requests(request: web.Request) -> web.Response:
    """Calls per endpoint, per account and per status since start, reset or the last clear."""
    return web.json_response(_state(request).requests.to_json())


@admin_routes.delete("/_sandbox/requests")
async def clear_requests(request: web.Request) -> web.Response:
    """Forget the counted calls (a benchmark clears them before each measured phase)."""
    state = _state(request)
    state.requests.clear()
    return web.json_response(state.requests.to_json())


@admin_routes.post("/_sandbox/rate-limit")
async def set_rate_limit(request: web.Request) -> web.Response:
    """Change the requests-per-second limit."""
    state = _state(request)
    body = await parse_json_body(request, RateLimitRequest)
    state.limiter.per_second = body.per_second
    return web.json_response({"per_second": state.limiter.per_second})


@admin_routes.post("/_sandbox/keys/revoke")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke one of the sandbox's keys: calls with it get Stripe's expired-key 401."""
    state = _state(request)
    body = await parse_json_body(request, KeyRequest)
    if not state.keys.revoke(body.key):
        raise NotFoundError("no such key in this sandbox", title="Unknown key")
    return web.json_response({"revoked": len(state.keys.revoked)})


@admin_routes.post("/_sandbox/keys/restore")
async def restore_keys(request: web.Request) -> web.Response:
    """Make every revoked key valid again."""
    state = _state(request)
    state.keys.restore_all()
    return web.json_response({"revoked": 0})


@admin_routes.post("/_sandbox/reset")
async def reset(request: web.Request) -> web.Response:
    """Back to the seeded start, the start-up faults and limit; keys restored; the log cleared."""
    state = _state(request)
    state.reset()
    return web.json_response({"now": state.scenario.now_iso})


@admin_routes.get("/_sandbox/payments")
async def list_payment_facts(request: web.Request) -> web.Response:
    """Ground truth: where every PaymentID lives and which payout carried it."""
    payments = _state(request).view.world.payments
    return web.json_response({"data": [payment_facts_json(facts) for facts in payments.values()]})


@admin_routes.get("/_sandbox/payments/{payment_id}")
async def payment_facts(request: web.Request) -> web.Response:
    """Ground truth of one PaymentID."""
    payment_id = request.match_info["payment_id"]
    facts = _state(request).view.world.payments.get(payment_id)
    if facts is None:
        raise NotFoundError(f"no payment {payment_id!r} in the scenario", title="Unknown payment")
    return web.json_response(payment_facts_json(facts))


def _webhooks_json(state: StripeSandboxState) -> dict[str, Any]:
    deliverer = state.webhooks
    return {
        "endpoints": [{"url": e.url, "connect": e.connect} for e in deliverer.endpoints],
        "events": len(state.events.events),
        "attempts": dict(deliverer.attempts),
        "outcomes": dict(deliverer.outcomes),
    }


@admin_routes.get("/_sandbox/webhooks")
async def get_webhooks(request: web.Request) -> web.Response:
    """Endpoints (without secrets), events kept, delivery attempts per endpoint and outcomes."""
    return web.json_response(_webhooks_json(_state(request)))


@admin_routes.post("/_sandbox/webhooks")
async def add_webhook(request: web.Request) -> web.Response:
    """Send later events to one more endpoint (`connect: true` for Connect events)."""
    state = _state(request)
    body = await parse_json_body(request, WebhookRequest)
    state.webhooks.endpoints.append(WebhookEndpoint(body.url, body.secret, connect=body.connect))
    return web.json_response(_webhooks_json(state))


@admin_routes.delete("/_sandbox/webhooks")
async def clear_webhooks(request: web.Request) -> web.Response:
    """Stop sending events anywhere."""
    state = _state(request)
    state.webhooks.endpoints.clear()
    return web.json_response(_webhooks_json(state))
