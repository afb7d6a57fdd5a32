"""Command line: `python -m devstack.scenario export --seed 7 --orders 1000 --format csv --out FILE`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from devstack.scenario.exports import write_csv, write_xlsx
from devstack.scenario.generator import Scenario

if TYPE_CHECKING:
    from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.scenario", description="Seeded OpenTickets data."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write an OpenTickets export file (CSV or XLSX)")
    export.add_argument("--seed", type=int, default=7)
    export.add_argument("--orders", type=int, default=1_000)
    export.add_argument("--events", type=int, default=6)
    export.add_argument("--organizers", type=int, default=3)
    export.add_argument("--format", choices=("csv", "xlsx"), default="csv")
    export.add_argument("--date-format", choices=("iso", "us"), default="iso")
    export.add_argument("--event-id", default=None, help="only this event's orders")
    export.add_argument("--out", required=True, help="file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        scenario = Scenario(
            seed=args.seed, events=args.events, orders=args.orders, organizers=args.organizers
        )
    except ValueError as error:
        parser.error(str(error))
    if args.event_id is not None and args.event_id not in scenario.event_ids():
        parser.error(f"unknown event id {args.event_id!r}; known: {', '.join(scenario.event_ids())}")
    rows = scenario.transactions(event_id=args.event_id)
    writer = write_csv if args.format == "csv" else write_xlsx
    count = writer(args.out, rows, date_format=args.date_format)
    sys.stderr.write(f"wrote {count} rows to {args.out}\n")
    return 0
