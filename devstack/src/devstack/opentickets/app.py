"""Wiring: the aiohttp application, its fault and error middlewares."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

from devstack.opentickets.fault_routes import fault_routes
from devstack.opentickets.faults import Fault
from devstack.opentickets.keys import STATE_KEY
from devstack.opentickets.routes import routes
from devstack.opentickets.state import SandboxState
from otcommon.http import ProblemError, TooManyRequestsError, problem_middleware

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp.typedefs import Handler

    from devstack.opentickets.settings import SandboxSettings

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


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the configured latency and faults into data API requests."""
    if not request.path.startswith(FAULTY_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    state.requests[request.path] += 1
    config = state.faults.config
    if config.latency_ms:
        await asyncio.sleep(config.latency_ms / 1000)
    match state.faults.next_request_fault():
        case Fault.DROP:
            # Close without an answer, as a crashed proxy would; aiohttp discards the response below.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=web.HTTPServiceUnavailable.status_code)
        case Fault.TOO_MANY_REQUESTS:
            raise TooManyRequestsError(
                f"rate limit reached; retry after {config.retry_after_s} s",
                retry_after_seconds=config.retry_after_s,
            )
        case Fault.SERVER_ERROR:
            raise InjectedServerError(config.status_5xx)
        case _:
            return await handler(request)


def create_app(
    settings: SandboxSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    state: SandboxState | None = None,
) -> web.Application:
    """The OpenTickets sandbox application."""
    app = web.Application(middlewares=[problem_middleware, fault_middleware])
    app[STATE_KEY] = state if state is not None else SandboxState(settings=settings, clock=clock)
    app.add_routes(routes)
    app.add_routes(fault_routes(lambda request: request.app[STATE_KEY].faults))
    return app
