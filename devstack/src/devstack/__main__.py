"""``python -m devstack``: start the local stand-ins, alone or all together."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from devstack import cosmos
from devstack.processes import StartupError
from devstack.stack import Stack, StackOptions, StackPorts

if TYPE_CHECKING:
    from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per stand-in, and ``up`` for all of them."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start every stand-in, provision Cosmos DB, print the settings")
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    up.add_argument(
        "--cosmos-port", type=int, default=8081, help="Cosmos DB stand-in port (default: %(default)s)"
    )
    up.add_argument("--database", default="opentickets", help="Cosmos DB database (default: %(default)s)")
    up.add_argument(
        "--servicebus-port", type=int, default=5672, help="Service Bus emulator port (default: %(default)s)"
    )
    up.add_argument(
        "--opentickets-port", type=int, default=8090, help="OpenTickets sandbox port (default: %(default)s)"
    )
    up.add_argument(
        "--stripe-port", type=int, default=12111, help="Stripe sandbox port (default: %(default)s)"
    )
    up.add_argument(
        "--ingest-port", type=int, default=8080, help="ingest service port (default: %(default)s)"
    )
    up.add_argument(
        "--webhooks-port", type=int, default=8082, help="webhook service port (default: %(default)s)"
    )
    up.add_argument(
        "--enricher-port", type=int, default=8083, help="enricher health port (default: %(default)s)"
    )
    up.add_argument("--query-api-port", type=int, default=8084, help="query API port (default: %(default)s)")
    up.add_argument("--orders", type=int, default=2000, help="orders in the sandbox (default: %(default)s)")
    up.add_argument("--events", type=int, default=6, help="events in the sandbox (default: %(default)s)")
    up.add_argument("--no-services", action="store_true", help="start only the stand-ins")

    for name, what in PASS_THROUGH.items():
        commands.add_parser(name, help=f"run the {what} (python -m devstack {name} --help)", add_help=False)

    cosmos_cmd = commands.add_parser("cosmos", help="run the Cosmos DB stand-in in the foreground")
    cosmos_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    cosmos_cmd.add_argument("--port", type=int, default=8081, help="port (default: %(default)s)")
    return parser


PASS_THROUGH = {
    "servicebus": "Service Bus emulator",
    "opentickets": "OpenTickets sandbox API",
    "stripe": "Stripe API sandbox",
    "scenario": "scenario generator and export writer",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in PASS_THROUGH:
        # Each of these stand-ins owns its command line.
        module = importlib.import_module(f"devstack.{arguments[0]}.cli")
        return int(module.main(arguments[1:]))
    args = build_parser().parse_args(arguments)
    try:
        if args.command == "cosmos":
            return run_cosmos(host=args.host, port=args.port)
        ports = StackPorts(
            host=args.host,
            cosmos=args.cosmos_port,
            servicebus=args.servicebus_port,
            opentickets=args.opentickets_port,
            stripe=args.stripe_port,
            ingest=args.ingest_port,
            webhooks=args.webhooks_port,
            enricher=args.enricher_port,
            query_api=args.query_api_port,
        )
        options = StackOptions(
            database=args.database,
            sandbox_orders=args.orders,
            sandbox_events=args.events,
            services=not args.no_services,
        )
        return run_up(ports=ports, options=options)
    except (StartupError, FileNotFoundError) as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1


def run_cosmos(*, host: str, port: int) -> int:
    """Replace this process with the stand-in, so signals reach it directly."""
    command = cosmos.server_command(host=host, port=port)
    os.chdir(cosmos.node_project_dir())
    os.execv(command[0], command)  # noqa: S606 - the command is built from the package's own files


def run_up(*, ports: StackPorts, options: StackOptions) -> int:
    """Start the stack, print how to reach it, and stop it all on Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def interrupt_startup(signum: int, _: object) -> None:
        # Raised inside Stack.start, which then stops whatever it had started.
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt_startup)
    stack = Stack(options=options)
    try:
        stack.start(ports, on_progress=lambda step: print(f"devstack: {step}", flush=True))
    except KeyboardInterrupt:
        print("devstack: interrupted while starting; everything started was stopped", flush=True)
        return 130
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        print("devstack: ready", flush=True)
        for name, endpoint in stack.endpoints.items():
            print(f"  {name:<12} {endpoint}", flush=True)
        print("Settings for the services (export them to run a service by hand):", flush=True)
        for key, value in stack.environment.items():
            print(f"  export {key}='{value}'", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
    finally:
        print("devstack: stopping", flush=True)
        stack.stop()
        print("devstack: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
