"""``python -m ingest``: serve (scheduler + HTTP), sync once, backfill, import a file, requeue."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from tqdm import tqdm

from ingest.app import create_app, open_ingest
from ingest.exportfile import ExportFileError
from ingest.settings import IngestSettings
from ingest.source import SourceError
from otcommon.bus import PublishError
from otcommon.enrichment import EnrichmentState
from otcommon.schemas import parse_timestamp
from otcommon.settings import ConfigurationError, load_settings
from otcommon.store import StoreError
from otcommon.telemetry import configure_logging, configure_metrics, configure_tracing

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ingest.importer import FileImporter
    from ingest.sync import SyncProgress

log = structlog.get_logger("ingest")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_STOPPED = 143  # a sync ended early by SIGTERM/SIGINT (at a page boundary, or before it started)
EXIT_INTERRUPTED = 130  # Ctrl-C during an import or a requeue


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", help="run the scheduler and the HTTP endpoints until SIGTERM")

    sync = commands.add_parser("sync", help="sync from the OpenTickets API")
    sync.add_argument(
        "--once", action="store_true", required=True, help="one sync from the checkpoint, then exit"
    )

    backfill = commands.add_parser("backfill", help="sync every change since a date (checkpoint kept)")
    backfill.add_argument("--since", required=True, type=_timestamp, help="ISO 8601 date or timestamp (UTC)")

    importer = commands.add_parser("import", help="import an OpenTickets export file (CSV or XLSX)")
    importer.add_argument("file", type=Path, help="the export file")
    importer.add_argument("--event-id", help="event id for every row (default: a slug of EventName)")
    importer.add_argument("--encoding", default="utf-8-sig", help="CSV text encoding (default: %(default)s)")
    importer.add_argument("--json", action="store_true", help="print the report as JSON")

    requeue = commands.add_parser(
        "requeue", help="queue payments in an enrichment state for enrichment again"
    )
    requeue.add_argument(
        "--state",
        required=True,
        choices=[state.value for state in EnrichmentState],
        help="state to requeue",
    )
    return parser


def _timestamp(value: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(IngestSettings)
        if args.command in {"serve", "sync", "backfill"}:
            settings.require_source_credentials()
    except ConfigurationError as exc:
        return _fail(exc)
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    configure_tracing(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    configure_metrics(service_name=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    if args.command == "serve":
        web.run_app(
            create_app(settings),
            host=settings.ingest_http_host,
            port=settings.ingest_http_port,
            print=None,
            shutdown_timeout=5.0,
        )
        return EXIT_OK
    try:
        return asyncio.run(_run_command(args, settings))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if not isinstance(exc, _EXPECTED_FAILURES):
            raise  # a bug: its traceback is what a developer needs
        return _fail(exc)


_EXPECTED_FAILURES = (ConfigurationError, ExportFileError, SourceError, StoreError, PublishError)
"""Failures of the environment or the input: a message and an exit code, never a traceback."""


def _fail(error: Exception) -> int:
    """Report an expected failure on stderr; its exit code. The one place failures become exit codes."""
    message = str(error)
    if isinstance(error, PublishError):
        message = f"Service Bus: {error} (stored payments stay pending; the next sync queues them)"
    print(f"ingest: {message}", file=sys.stderr)
    return EXIT_USAGE if isinstance(error, ConfigurationError) else EXIT_FAILED


def _exit_code_of_run(progress: SyncProgress) -> int:
    """The exit code of a sync that ended without raising."""
    if progress.state == "stopped":
        print(
            "ingest: stopped by a signal before the sync finished; the checkpoint covers every stored "
            "row, so the next run continues from there",
            file=sys.stderr,
        )
        return EXIT_STOPPED
    return EXIT_OK if progress.state == "completed" else EXIT_FAILED


async def _run_command(args: argparse.Namespace, settings: IngestSettings) -> int:
    needs_source = args.command in {"sync", "backfill"}
    async with open_ingest(settings, with_source=needs_source) as ingest:
        if args.command == "import":
            return await _import(ingest.importer, args)
        if args.command == "requeue":
            count = await ingest.queue.requeue(state=EnrichmentState(args.state))
            print(f"requeued {count} payment(s) that were {args.state}")
            return EXIT_OK
        since = args.since if args.command == "backfill" else None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Stop at the next page boundary, with a consistent checkpoint and the lease released;
            # a stop while another replica holds the lease ends the wait.
            loop.add_signal_handler(signum, ingest.coordinator.request_stop)
        progress = await ingest.coordinator.run_once(since=since, on_demand=True)
        assert progress is not None  # noqa: S101 - only a scheduled tick is skipped, never an on-demand run
        print(json.dumps(progress.to_json(), indent=2))
        return _exit_code_of_run(progress)


async def _import(importer: FileImporter, args: argparse.Namespace) -> int:
    with tqdm(desc=args.file.name, unit=" rows", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        report = await importer.run(
            args.file, event_id=args.event_id, encoding=args.encoding, on_rows=bar.update
        )
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return EXIT_FAILED if report.error else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
