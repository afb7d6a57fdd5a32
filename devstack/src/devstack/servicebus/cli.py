"""Command line entry: `--config PATH --port N [--host H] [--data-file PATH] [--key-name N] [--key K]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.servicebus.auth import SharedAccessKey
from devstack.servicebus.broker import Broker
from devstack.servicebus.config import ConfigError, load_topology
from devstack.servicebus.store import Store

if TYPE_CHECKING:
    from types import FrameType

# Microsoft's emulator documents this key for local use; it protects nothing and is not a secret.
DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"
READY_PREFIX = "servicebus emulator ready"
EXIT_CONFIG_ERROR = 2
EXIT_CANNOT_LISTEN = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devstack servicebus", description="Local Azure Service Bus emulator"
    )
    parser.add_argument(
        "--config", type=Path, required=True, help="topology file (Microsoft emulator format)"
    )
    parser.add_argument("--port", type=int, required=True, help="AMQP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--data-file", type=Path, default=None, help="SQLite file; in-memory when omitted")
    parser.add_argument("--key-name", default=DEFAULT_KEY_NAME, help="shared access key name")
    parser.add_argument("--key", default=DEFAULT_KEY, help="shared access key")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT; exit 0 then, 2 on a bad config."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Proton logs every client that drops its socket as an error; for a broker that is routine, and the
    # server releases what such a client held when the transport closes.
    logging.getLogger("proton").setLevel(logging.CRITICAL)
    try:
        topology = load_topology(args.config)
    except ConfigError as error:
        print(f"servicebus emulator: invalid config {args.config}:\n{error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    store = Store(args.data_file) if args.data_file is not None else None
    broker = Broker(topology, clock=time.time, store=store)
    stop_requested = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def announce(host: str, port: int) -> None:
        print(f"{READY_PREFIX} on {host}:{port} (namespace {topology.namespace})", flush=True)

    # Imported late so a config error is reported without loading the AMQP stack.
    from devstack.servicebus.server import run_server  # noqa: PLC0415

    try:
        run_server(
            broker,
            host=args.host,
            port=args.port,
            rule=SharedAccessKey(args.key_name, args.key),
            on_ready=announce,
            should_stop=lambda: stop_requested,
        )
    except OSError as error:
        print(
            f"servicebus emulator: cannot listen on {args.host}:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_LISTEN
    finally:
        if store is not None:
            store.close()
    return 0
