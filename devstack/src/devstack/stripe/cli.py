"""Command line: `python -m devstack stripe --port N ...`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from devstack.sandbox.server import run_server, serve_until_stopped
from devstack.sandbox.settings import add_fault_arguments, add_scenario_arguments
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

    from aiohttp import web

READY_PREFIX = "stripe-sandbox ready on"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack stripe",
        description="Stripe API sandbox: the scenario's Stripe side. Give it the OpenTickets sandbox's "
        "--seed, --orders, --events and --organizers, and both serve the same world.",
    )
    add_scenario_arguments(parser)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--restricted-key", default=DEFAULT_RESTRICTED_KEY)
    parser.add_argument(
        "--restricted-permissions",
        default=",".join(sorted(DEFAULT_RESTRICTED_PERMISSIONS)),
        help=f"comma-separated, from: {', '.join(sorted(PERMISSIONS))} (default: %(default)s)",
    )
    parser.add_argument("--rate-limit", dest="rate_limit_per_second", type=int, default=25, help="requests/s")
    add_fault_arguments(parser)
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


def built_app(settings: StripeSandboxSettings) -> web.Application:
    """The app, its Stripe world built now, so the first request after "ready" does not wait for it."""
    app = create_app(settings)
    _ = app[STATE_KEY].view
    return app


async def serve(settings: StripeSandboxSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    await serve_until_stopped(
        lambda: built_app(settings),
        settings=settings,
        ready_line=lambda url: f"{READY_PREFIX} {url} key {settings.secret_key}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    settings = settings_from_args(sys.argv[1:] if argv is None else argv)
    return run_server("stripe-sandbox", settings, serve(settings))
