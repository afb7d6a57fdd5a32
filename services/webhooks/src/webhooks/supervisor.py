"""Several server processes on one port (``OT_WEBHOOKS_PROCESSES``), for a host with cores to spare.

One Python process answers and applies on one core. Where a pod (or a host without an orchestrator)
has more, ``serve`` starts this many copies of itself, each a whole service with its own clients,
workers and sweep, listening on the same port with ``SO_REUSEPORT`` so that the kernel spreads the
connections over them. Nothing is shared between them but Cosmos DB, which already makes them safe
together as it makes replicas safe: an event record is created once, transaction writes are
ETag-guarded, settling twice is a no-op.

The supervisor only starts, forwards signals and waits: a child that exits unexpectedly stops the
others and the supervisor exits 1, so the orchestrator restarts the whole set, as it would restart
one process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import FrameType

log = structlog.get_logger("webhooks.supervisor")

CHILD_SETTINGS = {"OT_WEBHOOKS_PROCESSES": "1", "OT_WEBHOOKS_REUSE_PORT": "true"}
"""What makes a child serve alone on the shared port."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve_processes(count: int, *, environ: Mapping[str, str] | None = None) -> int:
    """Run ``count`` copies of ``python -m webhooks serve`` on one port until they stop; the exit code."""
    env = {**(os.environ if environ is None else environ), **CHILD_SETTINGS}
    command = [sys.executable, "-m", "webhooks", "serve"]
    children = [subprocess.Popen(command, env=env) for _ in range(count)]  # noqa: S603 - our own module
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children, signum)

    for each in STOP_SIGNALS:
        signal.signal(each, forward)
    log.info("webhooks processes started", processes=count, pids=[child.pid for child in children])
    first = _wait_for_any(children)
    crashed = not stopping
    if crashed:
        log.error("a webhooks process exited; stopping the others", pid=first.pid, code=first.returncode)
        _signal_all(children, signal.SIGTERM)
    codes = [child.wait() for child in children]
    return 1 if crashed or any(codes) else 0


def _wait_for_any(children: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """The first child to exit (its return code set); the others are left running."""
    by_pid = {child.pid: child for child in children}
    while True:
        pid, status = os.wait()  # retried after a signal handler ran (PEP 475)
        if pid in by_pid:
            child = by_pid[pid]
            child.returncode = os.waitstatus_to_exitcode(status)
            return child


def _signal_all(children: list[subprocess.Popen[bytes]], signum: int) -> None:
    for child in children:
        if child.returncode is None:
            child.send_signal(signum)
