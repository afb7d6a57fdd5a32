"""Command line: `python -m devstack.opentickets --port N ...`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from devstack.opentickets.app import create_app
from devstack.opentickets.settings import SandboxSettings
from devstack.sandbox.server import run_server, serve_until_stopped
from devstack.sandbox.settings import add_fault_arguments, add_scenario_arguments

if TYPE_CHECKING:
    from collections.abc import Sequence

READY_PREFIX = "opentickets-sandbox ready on"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.opentickets", description="OpenTickets API sandbox (seeded scenario)."
    )
    add_scenario_arguments(parser)
    add_fault_arguments(parser)
    parser.add_argument("--fault-rate-429", type=float, default=0.0)
    parser.add_argument("--token-ttl", type=int, default=3_600, help="access token lifetime in seconds")
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument("--api-key", default="sandbox-api-key")
    return parser


def settings_from_args(argv: Sequence[str]) -> SandboxSettings:
    """Settings from command-line arguments (exits with status 2 on bad input, as argparse does)."""
    parser = _parser()
    args = parser.parse_args(list(argv))
    try:
        return SandboxSettings.model_validate(vars(args))
    except ValidationError as error:
        parser.error(str(error))


async def serve(settings: SandboxSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    await serve_until_stopped(
        lambda: create_app(settings), settings=settings, ready_line=lambda url: f"{READY_PREFIX} {url}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    settings = settings_from_args(sys.argv[1:] if argv is None else argv)
    return run_server("opentickets-sandbox", settings, serve(settings))
