"""Wiring: the aiohttp application, its fault and error middlewares."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

from devstack.opentickets.faults import Fault
from devstack.opentickets.keys import STATE_KEY
from devstack.opentickets.problems import ProblemError, problem_response, render
from devstack.opentickets.routes import routes
from devstack.opentickets.state import SandboxState

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp.typedefs import Handler

    from devstack.opentickets.settings import SandboxSettings

# Faults hit the data API only: the token endpoint and the sandbox controls stay reliable, so a
# test can always switch faults off again and a client can always get a token.
FAULTY_PREFIX = "/v1/"


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors and router errors into problem+json responses."""
    try:
        return await handler(request)
    except ProblemError as error:
        return render(error)
    except web.HTTPException as error:
        if error.status < web.HTTPBadRequest.status_code:
            raise
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return problem_response(
            status=error.status,
            slug="not-found" if error.status == web.HTTPNotFound.status_code else "http-error",
            title=error.reason,
            detail=f"{request.method} {request.path}: {error.reason}",
            headers=headers,
        )


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
            raise ProblemError(
                status=429,
                slug="rate-limited",
                title="Too Many Requests",
                detail=f"rate limit reached; retry after {config.retry_after_s} s",
                headers={"Retry-After": str(config.retry_after_s)},
            )
        case Fault.SERVER_ERROR:
            raise ProblemError(
                status=config.status_5xx,
                slug="unavailable",
                title="Server Error",
                detail="injected server error; retry later",
            )
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
    return app
