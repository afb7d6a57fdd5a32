"""Wiring: the HTTP app, its verifier and its health routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from otcommon.health import add_health_routes
from otcommon.http import SERVICE_MIDDLEWARES
from webhooks.routes import LIVEMODE, VERIFIER, routes
from webhooks.signature import SignatureVerifier

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from webhooks.settings import WebhookSettings


def create_app(settings: WebhookSettings) -> web.Application:
    """The HTTP app: the Stripe endpoint and health."""
    app = web.Application(middlewares=SERVICE_MIDDLEWARES, client_max_size=settings.webhooks_max_body_bytes)
    app[VERIFIER] = SignatureVerifier(
        settings.signing_secrets, tolerance_seconds=settings.webhooks_tolerance_seconds
    )
    app[LIVEMODE] = settings.webhooks_livemode
    app.add_routes(routes)
    checks: dict[str, Callable[[], Awaitable[None]]] = {}
    add_health_routes(app, checks)
    return app
