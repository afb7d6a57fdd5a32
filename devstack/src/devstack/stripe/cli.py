"""Command line: `python -m devstack stripe --port N ...`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import ValidationError

from devstack.stripe.app import create_app
from devstack.stripe.appkeys import STATE_KEY
from devstack.stripe.keys import PERMISSIONS
from devstack.stripe.settings import (
    DEFAULT_RESTRICTED_KEY,
    DEFAULT_RESTRICTED_PERMISSIONS,
    DEFAULT_SECRET_KEY,
    StripeSandboxSettings,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

READY_PREFIX = "stripe-sandbox ready on"
SHUTDOWN_TIMEOUT_S = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack stripe",
        description="Stripe API sandbox: the scenario's Stripe side. Give it the OpenTickets sandbox's "
        "--seed, --orders, --events and --organizers, and both serve the same world.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=6)
    parser.add_argument("--organizers", type=int, default=3)
    parser.add_argument("--sales-per-hour", type=float, default=None)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--restricted-key", default=DEFAULT_RESTRICTED_KEY)
    parser.add_argument(
        "--restricted-permissions",
        default=",".join(sorted(DEFAULT_RESTRICTED_PERMISSIONS)),
        help=f"comma-separated, from: {', '.join(sorted(PERMISSIONS))} (default: %(default)s)",
    )
    parser.add_argument("--rate-limit", dest="rate_limit_per_second", type=int, default=25, help="requests/s")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--fault-rate-5xx", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--webhook-url", default=None, help="where platform events are delivered")
    parser.add_argument("--webhook-secret", default="whsec_opentickets_sandbox")
    parser.add_argument("--connect-webhook-url", default=None, help="where Connect events are delivered")
    parser.add_argument("--connect-webhook-secret", default="whsec_opentickets_sandbox_connect")
    return parser


def settings_from_args(argv: Sequence[str]) -> StripeSandboxSettings:
    """Settings from command-line arguments (exits with status 2 on bad input, as argparse does)."""
    parser = _parser()
    args = vars(parser.parse_args(list(argv)))
    permissions = args.pop("restricted_permissions")
    args["restricted_permissions"] = frozenset(p.strip() for p in permissions.split(",") if p.strip())
    unknown = args["restricted_permissions"] - PERMISSIONS.keys()
    if unknown:
        parser.error(f"unknown --restricted-permissions: {', '.join(sorted(unknown))}")
    try:
        return StripeSandboxSettings.model_validate(args)
    except ValidationError as error:
        parser.error(str(error))


async def serve(settings: StripeSandboxSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
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
    app = create_app(settings)
    # Build the Stripe world now, so the first request after "ready" does not wait for it.
    _ = app[STATE_KEY].view
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        sys.stdout.write(f"{READY_PREFIX} http://{host}:{port} key {settings.secret_key}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await runner.cleanup()
        sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    settings = settings_from_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(settings))
    except OSError as error:
        sys.stderr.write(f"stripe-sandbox cannot listen on {settings.host}:{settings.port}: {error}\n")
        return 1
    return 0
