"""``python -m webhooks``: serve the Stripe endpoint, replay a recorded event, or recover undelivered ones."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import stripe
from aiohttp import web

from otcommon.runtime import tune_garbage_collection
from otcommon.settings import ConfigurationError, load_settings
from otcommon.store import DocumentNotFoundError
from otcommon.telemetry import configure_logging, configure_metrics, configure_tracing
from webhooks.app import create_app, open_webhooks
from webhooks.apply_process import serve_applying
from webhooks.recovery import Replay, replay_undelivered
from webhooks.settings import WebhookSettings
from webhooks.states import EventState, InvalidTransitionError
from webhooks.stripe_events import EventWindow, StripeEventsApi
from webhooks.supervisor import serve_processes

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
STRIPE_EVENT_RETENTION = timedelta(days=30)
"""How far back Stripe's event list reaches."""


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m webhooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="receive Stripe webhooks until SIGTERM")
    replay = commands.add_parser(
        "replay",
        help="apply one recorded event that was ignored or failed (EVENT_ID), or recover the events Stripe "
        "could not deliver (--since)",
    )
    replay.add_argument("event_id", metavar="EVENT_ID", nargs="?", help="the Stripe event id (evt_...)")
    replay.add_argument(
        "--since",
        type=instant,
        metavar="DATE",
        help="recover undelivered events created at or after DATE (ISO 8601; a date alone is midnight UTC); "
        "Stripe lists the last 30 days",
    )
    replay.add_argument("--until", type=instant, metavar="DATE", help="... and before DATE (default: now)")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    return parser


def instant(text: str) -> datetime:
    """A command-line date or timestamp; UTC unless it names an offset."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or timestamp: {text!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _replay_usage_error(args: argparse.Namespace) -> str | None:
    if (args.event_id is None) == (args.since is None):
        return "replay needs either EVENT_ID or --since DATE"
    if args.event_id is not None and (args.until is not None or args.dry_run):
        return "--until and --dry-run go with --since"
    if args.since is not None and args.until is not None and args.until <= args.since:
        return "--until must be later than --since"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "replay" and (problem := _replay_usage_error(args)):
        parser.error(problem)
    apply_from: list[int] = []
    try:
        settings = load_settings(WebhookSettings)
        if args.command == "serve":
            settings.require_secrets()
            apply_from = settings.apply_from
        if args.command == "replay" and args.since is not None:
            settings.require_stripe_key()
    except ConfigurationError as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    configure_tracing(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    configure_metrics(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    if args.command == "replay" and args.since is not None:
        window = EventWindow(
            since=int(args.since.timestamp()),
            until=int(args.until.timestamp()) if args.until is not None else None,
        )
        return asyncio.run(_replay_since(settings, window, dry_run=args.dry_run))
    if args.command == "replay":
        return asyncio.run(_replay(settings, args.event_id))
    if settings.webhooks_processes > 1 or settings.webhooks_apply_processes > 0:
        return serve_processes(settings.webhooks_processes, apply_count=settings.webhooks_apply_processes)
    tune_garbage_collection()
    if apply_from:
        # An apply process of a set (webhooks/handoff.py): lower priority than the answers.
        os.nice(settings.webhooks_apply_niceness)
        asyncio.run(serve_applying(settings, apply_from))
        return EXIT_OK
    web.run_app(
        create_app(settings),
        host=settings.webhooks_http_host,
        port=settings.webhooks_http_port,
        reuse_port=settings.webhooks_reuse_port or None,
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


async def _replay_since(settings: WebhookSettings, window: EventWindow, *, dry_run: bool) -> int:
    oldest = datetime.now(UTC) - STRIPE_EVENT_RETENTION
    if window.since < oldest.timestamp():
        print(f"note: Stripe lists events of the last 30 days only (since {oldest:%Y-%m-%d %H:%M} UTC)")
    source = StripeEventsApi(
        api_key=settings.require_stripe_key().get_secret_value(),
        api_base=settings.stripe_api_base,
        max_network_retries=settings.stripe_max_network_retries,
        timeout_seconds=settings.stripe_timeout_seconds,
        requests_per_second=settings.stripe_requests_per_second,
    )
    try:
        async with open_webhooks(settings) as webhooks:
            replay = Replay(window=window, livemode=settings.webhooks_livemode, dry_run=dry_run)
            tally = await replay_undelivered(
                source=source,
                processor=webhooks.processor,
                replay=replay,
                progress=lambda line: print(line, flush=True),
            )
    except stripe.StripeError as error:
        print(f"webhooks: Stripe refused the event listing: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await source.close()
    return EXIT_OK if tally.ok else EXIT_FAILED
