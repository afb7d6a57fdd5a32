"""``python -m webhooks``: serve the Stripe webhook endpoint."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from otcommon.settings import ConfigurationError, load_settings
from otcommon.telemetry import configure_logging, configure_tracing
from webhooks.app import create_app
from webhooks.settings import WebhookSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m webhooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="receive Stripe webhooks until SIGTERM")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    build_parser().parse_args(argv)
    try:
        settings = load_settings(WebhookSettings)
        settings.require_secrets()
    except ConfigurationError as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    configure_tracing(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    web.run_app(
        create_app(settings),
        host=settings.webhooks_http_host,
        port=settings.webhooks_http_port,
        print=None,
        shutdown_timeout=5.0,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
