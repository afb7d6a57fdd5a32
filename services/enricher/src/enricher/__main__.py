"""``python -m enricher``: serve (queue consumer + health), enrich payments once, reindex, refresh payouts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from enricher.app import create_app, open_enricher, utc_now
from enricher.findings import enrichment_fields, unresolved_fields
from enricher.gateway import StripeGatewayError
from enricher.refresh import refresh_open_payouts, reindex
from enricher.service import Unresolved
from enricher.settings import EnricherSettings
from otcommon.bus import PermanentError, RetryableError
from otcommon.runtime import CONSUMER_GC_THRESHOLDS, tune_garbage_collection
from otcommon.schemas import PAYMENT_ID_PATTERN
from otcommon.settings import ConfigurationError, load_settings
from otcommon.store import StoreError
from otcommon.telemetry import configure_logging, configure_metrics, configure_tracing

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m enricher", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="consume stripe-enrichment-queue and serve /healthz and /readyz")
    enrich = commands.add_parser(
        "enrich", help="enrich payments now and write the results; print the findings and the Stripe calls"
    )
    enrich.add_argument(
        "payment_ids", nargs="+", metavar="PAYMENT_ID", type=_payment_id, help="pi_... or ch_..."
    )
    again = commands.add_parser("reindex", help="list charges and payouts again (one account, or every one)")
    again.add_argument("--account", metavar="ACCT", help="only this connected account (acct_...)")
    commands.add_parser(
        "refresh-payouts",
        help="apply every open payout's current state and enrich again the payments not paid out yet",
    )
    return parser


def _payment_id(value: str) -> str:
    if not PAYMENT_ID_PATTERN.match(value.strip()):
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a pi_... or ch_... id")
    return value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(EnricherSettings)
        settings.require_stripe_key()
    except ConfigurationError as exc:
        print(f"enricher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    configure_tracing(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    configure_metrics(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    if args.command == "serve":
        tune_garbage_collection(CONSUMER_GC_THRESHOLDS)
        web.run_app(
            create_app(settings),
            host=settings.enricher_http_host,
            port=settings.enricher_http_port,
            print=None,
            shutdown_timeout=settings.enricher_shutdown_timeout_seconds + 5.0,
        )
        return EXIT_OK
    try:
        return asyncio.run(_run_command(args, settings))
    except (StripeGatewayError, StoreError, PermanentError, RetryableError) as exc:
        print(f"enricher: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


async def _run_command(args: argparse.Namespace, settings: EnricherSettings) -> int:
    # A one-off command writes in its own process: a write process pays off only for a backlog.
    async with open_enricher(settings.model_copy(update={"enricher_write_processes": 0})) as enricher:
        if args.command == "enrich":
            for payment_id in args.payment_ids:
                result = await enricher.handler.enrich(payment_id, requested_at=utc_now())
                if isinstance(result, Unresolved):
                    fields = unresolved_fields(reason=result.reason, enriched_at=utc_now())
                else:
                    fields = enrichment_fields(findings=result, enriched_at=utc_now())
                print(json.dumps({"paymentId": payment_id, **fields}, indent=2))
        elif args.command == "reindex":
            accounts = await reindex(indexer=enricher.indexer, account=args.account, clock=utc_now)
            print(f"reindexed {len(accounts)} account(s): {', '.join(accounts)}")
        else:
            report = await refresh_open_payouts(
                transactions=enricher.transactions,
                handler=enricher.handler,
                payouts=enricher.payouts,
                clock=utc_now,
            )
            summary = {"payouts": report.payouts, "payments": report.payments}
            print(json.dumps({**summary, "byDepositStatus": dict(report.by_outcome)}, indent=2))
        print(json.dumps({"stripeCalls": enricher.gateway.calls.to_json()}, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
