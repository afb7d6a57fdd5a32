"""``python -m webhooks``: serve the Stripe webhook endpoint, or replay one recorded event."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from otcommon.settings import ConfigurationError, load_settings
from otcommon.store import DocumentNotFoundError
from otcommon.telemetry import configure_logging, configure_tracing
from webhooks.app import create_app, open_webhooks
from webhooks.settings import WebhookSettings
from webhooks.states import EventState, InvalidTransitionError

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m webhooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="receive Stripe webhooks until SIGTERM")
    replay = commands.add_parser("replay", help="apply a recorded event that was ignored or failed, now")
    replay.add_argument("event_id", metavar="EVENT_ID", help="the Stripe event id (evt_...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(WebhookSettings)
        if args.command == "serve":
            settings.require_secrets()
    except ConfigurationError as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    configure_tracing(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    if args.command == "replay":
        return asyncio.run(_replay(settings, args.event_id))
    web.run_app(
        create_app(settings),
        host=settings.webhooks_http_host,
        port=settings.webhooks_http_port,
        print=None,
        shutdown_timeout=5.0,
    )
    return EXIT_OK


async def _replay(settings: WebhookSettings, event_id: str) -> int:
    async with open_webhooks(settings) as webhooks:
        try:
            state = await webhooks.processor.replay(event_id)
        except DocumentNotFoundError:
            print(
                f"webhooks: no recorded event {event_id} (never received, or past its 30-day TTL)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except InvalidTransitionError as exc:
            print(f"webhooks: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"{event_id}: {state.value}")
    return EXIT_OK if state is EventState.APPLIED else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
