"""Wiring: the aiohttp application and its middlewares, outermost first.

request log -> control errors -> Stripe error shape -> faults -> authentication and account -> rate limit
-> handler. The API (`/v1/`) answers errors in Stripe's shape; the sandbox's controls in problem+json.
The log sees every answer as sent (429s and injected faults included); faults come before the key
check, as a failing proxy would; the limit counts only authenticated calls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from devstack.sandbox.controls import control_routes
from devstack.sandbox.server import fault_middleware, request_log_middleware
from devstack.stripe.admin import admin_routes
from devstack.stripe.appkeys import STATE_KEY
from devstack.stripe.context import CALLER_KEY, Caller
from devstack.stripe.errors import API_PREFIX, StripeError, stripe_error_middleware
from devstack.stripe.routes import routes
from devstack.stripe.state import StripeSandboxState
from otcommon.http import problem_middleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from aiohttp.typedefs import Handler

    from devstack.sandbox.faults import FaultConfig
    from devstack.stripe.settings import StripeSandboxSettings


def _endpoint(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


def record_request(request: web.Request, status: int | str) -> None:
    """Count one API call by endpoint, by the account it acted as, and by status."""
    state = request.app[STATE_KEY]
    account = request.headers.get("Stripe-Account") or state.platform_account_id
    state.requests.record(endpoint=_endpoint(request), account=account, status=status)


@web.middleware
async def control_problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """problem+json errors for everything outside the Stripe API."""
    if request.path.startswith(API_PREFIX):
        return await handler(request)
    return await problem_middleware(request, handler)


def injected_server_error(config: FaultConfig) -> StripeError:
    """Stripe's answer to an injected 5xx, with the configured status."""
    return StripeError(
        "An unknown error occurred (injected by the sandbox).",
        status=config.status_5xx,
        error_type="api_error",
    )


def rate_limited() -> StripeError:
    """Stripe's 429: nothing was done, so a retry is safe and the client library may make it."""
    return StripeError(
        "Request rate limit exceeded. You made too many requests too quickly; retry after a short wait.",
        status=429,
        code="rate_limit",
        should_retry=True,
    )


@web.middleware
async def caller_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate the key, settle which account the call acts as, then apply the rate limit."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    key = state.keys.authenticate(request.headers, expire_now=state.faults.take_expired_token())
    platform = state.platform_account_id
    account = request.headers.get("Stripe-Account") or platform
    if account not in state.view.world.accounts:
        raise StripeError(
            f"The provided key '{key.redacted}' does not have access to account '{account}' (or that "
            "account does not exist). Application access may have been revoked.",
            status=403,
            should_retry=False,
        )
    if not state.limiter.admit(platform):
        raise rate_limited()
    request[CALLER_KEY] = Caller(key=key, account_id=account, platform_account_id=platform)
    return await handler(request)


def create_app(
    settings: StripeSandboxSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    state: StripeSandboxState | None = None,
) -> web.Application:
    """The Stripe sandbox application."""
    app = web.Application(
        middlewares=[
            request_log_middleware(prefix=API_PREFIX, record=record_request),
            control_problem_middleware,
            stripe_error_middleware,
            fault_middleware(
                prefix=API_PREFIX,
                faults_of=lambda request: request.app[STATE_KEY].faults,
                too_many_requests=lambda _config: rate_limited(),
                server_error=injected_server_error,
            ),
            caller_middleware,
        ]
    )
    app[STATE_KEY] = state if state is not None else StripeSandboxState(settings=settings, clock=clock)
    app.add_routes(routes)
    app.add_routes(admin_routes)
    app.add_routes(control_routes(lambda request: request.app[STATE_KEY]))
    app.cleanup_ctx.append(_webhook_deliveries)
    return app


async def _webhook_deliveries(app: web.Application) -> AsyncIterator[None]:
    """Webhook deliveries run while the app serves, over one HTTP session closed with it."""
    deliverer = app[STATE_KEY].webhooks
    async with aiohttp.ClientSession() as session:
        deliverer.start(session)
        try:
            yield
        finally:
            await deliverer.stop()
