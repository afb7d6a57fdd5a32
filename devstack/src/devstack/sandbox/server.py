"""The sandboxes' server: the request-log and fault middlewares, and running an app from the command
line (until SIGTERM or SIGINT) or inside a test's event loop, on a given or a free port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from devstack.sandbox.faults import Fault

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from aiohttp.typedefs import Handler, Middleware

    from devstack.sandbox.faults import FaultConfig, FaultController
    from devstack.sandbox.settings import ScenarioSandboxSettings

SHUTDOWN_TIMEOUT_S = 5.0
# A dropped connection has no status; the request log counts it under this mark.
DROPPED = web.RequestKey("dropped", bool)


def request_log_middleware(*, prefix: str, record: Callable[[web.Request, int | str], None]) -> Middleware:
    """Record every call under ``prefix`` once answered: its status, `dropped`, or `error` if it raised."""

    @web.middleware
    async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(prefix):
            return await handler(request)
        status: int | str = "error"
        try:
            response = await handler(request)
            status = "dropped" if request.get(DROPPED) else response.status
            return response
        finally:
            record(request, status)

    return log_requests


def fault_middleware(
    *,
    prefix: str,
    faults_of: Callable[[web.Request], FaultController],
    too_many_requests: Callable[[FaultConfig], Exception],
    server_error: Callable[[FaultConfig], Exception],
) -> Middleware:
    """Inject the configured latency, 429s, 5xx and dropped connections into calls under ``prefix``.

    Each sandbox raises its own API's error shapes: ``too_many_requests`` and ``server_error``.
    """

    @web.middleware
    async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(prefix):
            return await handler(request)
        faults = faults_of(request)
        config = faults.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        match faults.next_request_fault():
            case Fault.DROP:
                # Close without an answer, as a crashed proxy would; aiohttp discards the response below.
                request[DROPPED] = True
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=web.HTTPServiceUnavailable.status_code)
            case Fault.TOO_MANY_REQUESTS:
                raise too_many_requests(config)
            case Fault.SERVER_ERROR:
                raise server_error(config)
            case _:
                return await handler(request)

    return inject_faults


async def serve_until_stopped(
    build_app: Callable[[], web.Application],
    *,
    settings: ScenarioSandboxSettings,
    ready_line: Callable[[str], str],
) -> None:
    """Serve the app ``build_app`` makes until SIGTERM or SIGINT, then stop cleanly.

    Once it listens it prints ``ready_line(base_url)``, the line a parent process waits for.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Binding the socket here lets --port 0 work and tells us the port before we announce it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
    except OSError:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    runner = web.AppRunner(build_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        sys.stdout.write(f"{ready_line(f'http://{host}:{port}')}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await runner.cleanup()
        sock.close()


def run_server(name: str, settings: ScenarioSandboxSettings, serve: Coroutine[None, None, None]) -> int:
    """Run ``serve`` to its end; the process exit status (1, with a message, if it cannot listen)."""
    try:
        asyncio.run(serve)
    except OSError as error:
        # Most often the port is taken; say so instead of printing a traceback.
        sys.stderr.write(f"{name} cannot listen on {settings.host}:{settings.port}: {error}\n")
        return 1
    return 0


@contextlib.asynccontextmanager
async def serve_in_process(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port inside the running event loop; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        sock.close()
