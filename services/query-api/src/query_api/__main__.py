"""``python -m query_api``: serve the HTTP API, or print a local token for the shared secret."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from otcommon.settings import ConfigurationError, load_settings
from otcommon.telemetry import configure_logging, configure_metrics, configure_tracing
from query_api.auth import issue_local_token
from query_api.settings import QueryApiSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_TOKEN_HOURS = 12


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m query_api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="load the read model from Cosmos DB and serve HTTP until SIGTERM")
    token = commands.add_parser(
        "token", help="print an HS256 token signed with OT_QUERY_API_JWT_SECRET (local runs and tests)"
    )
    token.add_argument(
        "--events",
        nargs="+",
        metavar="EVENT_ID",
        help="restrict the token to these events (default: every event)",
    )
    token.add_argument("--subject", default="local-developer", help="the token's sub claim")
    token.add_argument(
        "--hours", type=int, default=DEFAULT_TOKEN_HOURS, help="lifetime in hours (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(QueryApiSettings)
    except ConfigurationError as exc:
        print(f"query-api: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "token":
        return _print_token(settings, args)
    # Only serving needs the app and what it imports (Polars, the Azure SDKs): `token` stays quick.
    from query_api.app import create_app  # noqa: PLC0415

    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    configure_tracing(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    configure_metrics(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    web.run_app(
        create_app(settings),
        host=settings.query_api_http_host,
        port=settings.query_api_http_port,
        print=None,
        shutdown_timeout=5.0,
    )
    return EXIT_OK


def _print_token(settings: QueryApiSettings, args: argparse.Namespace) -> int:
    if settings.query_api_jwt_secret is None:
        print("query-api: set OT_QUERY_API_JWT_SECRET to sign local tokens", file=sys.stderr)
        return EXIT_USAGE
    if args.hours < 1:
        print("query-api: --hours must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    print(
        issue_local_token(
            secret=settings.query_api_jwt_secret.get_secret_value(),
            rules=settings.token_rules(),
            subject=args.subject,
            events=args.events,
            lifetime_seconds=args.hours * 3600,
        )
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
