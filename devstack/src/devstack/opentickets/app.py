"""Wiring: the aiohttp application, its request count, fault and error middlewares."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from devstack.opentickets.keys import STATE_KEY
from devstack.opentickets.routes import routes
from devstack.opentickets.state import SandboxState
from devstack.sandbox.controls import control_routes
from devstack.sandbox.server import fault_middleware, request_log_middleware
from otcommon.http import ProblemError, TooManyRequestsError, problem_middleware

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.opentickets.settings import SandboxSettings
    from devstack.sandbox.faults import FaultConfig

# Faults hit the data API only: the token endpoint and the sandbox controls stay reliable, so a
# test can always switch faults off again and a client can always get a token.
FAULTY_PREFIX = "/v1/"


class InjectedServerError(ProblemError):
    """A server error the fault settings asked for, with their status (503 unless configured)."""

    title = "Server Error"
    slug = "unavailable"

    def __init__(self, status: int) -> None:
        super().__init__("injected server error; retry later")
        self.status = status


def too_many_requests(config: FaultConfig) -> TooManyRequestsError:
    """An injected 429, with the configured Retry-After."""
    return TooManyRequestsError(
        f"rate limit reached; retry after {config.retry_after_s} s", retry_after_seconds=config.retry_after_s
    )


def count_request(request: web.Request, _status: int | str) -> None:
    """The sandbox counts data API calls by path."""
    request.app[STATE_KEY].requests[request.path] += 1


def create_app(
    settings: SandboxSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    state: SandboxState | None = None,
) -> web.Application:
    """The OpenTickets sandbox application."""
    faults = fault_middleware(
        prefix=FAULTY_PREFIX,
        faults_of=lambda request: request.app[STATE_KEY].faults,
        too_many_requests=too_many_requests,
        server_error=lambda config: InjectedServerError(config.status_5xx),
    )
    requests = request_log_middleware(prefix=FAULTY_PREFIX, record=count_request)
    app = web.Application(middlewares=[problem_middleware, requests, faults])
    app[STATE_KEY] = state if state is not None else SandboxState(settings=settings, clock=clock)
    app.add_routes(routes)
    app.add_routes(control_routes(lambda request: request.app[STATE_KEY]))
    return app
