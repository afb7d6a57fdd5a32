"""``Server-Timing: app;dur=<ms>`` on every answer: the server's own time, as browsers' devtools show it.

The duration runs from the moment the app's middleware chain receives the request until the answer's
headers are prepared: authentication, parameters, the read model's work and the JSON body, but not
the HTTP parsing before it nor the transfer after it. A stream's figure is the time to its first byte.
Benchmarks read it to tell server time from the network and the client's own queueing.

Answers computed from the read model add ``wait;dur=<ms>``: the part of that time spent waiting for an
answer thread and for the model (a change being applied, or every thread busy), so a figure under
load tells queueing in the server from the answer's own work.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp.typedefs import Handler, Middleware

SERVER_TIMING: Final = "Server-Timing"
METRIC: Final = "app"
WAIT_METRIC: Final = "wait"
_STARTED = web.RequestKey("server_timing_started", float)
_WAITED = web.RequestKey("server_timing_waited", float)


def record_wait(request: web.Request, seconds: float) -> None:
    """Count ``seconds`` of this request's time as waiting for the read model (``wait;dur``)."""
    request[_WAITED] = request.get(_WAITED, 0.0) + seconds


def install_server_timing(
    app: web.Application, *, clock: Callable[[], float] = time.perf_counter
) -> Middleware:
    """Hook the header into ``app``'s responses; the returned middleware goes first in its chain."""

    @web.middleware
    async def start_clock(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[_STARTED] = clock()
        return await handler(request)

    async def add_header(request: web.Request, response: web.StreamResponse) -> None:
        started = request.get(_STARTED)
        if started is None:  # absent when aiohttp answers before the middleware chain runs
            return
        timing = f"{METRIC};dur={(clock() - started) * 1000:.1f}"
        waited = request.get(_WAITED)
        if waited is not None:
            timing += f", {WAIT_METRIC};dur={waited * 1000:.1f}"
        response.headers[SERVER_TIMING] = timing

    app.on_response_prepare.append(add_header)
    return start_clock
