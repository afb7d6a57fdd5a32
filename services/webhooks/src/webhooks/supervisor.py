"""Several server processes on one port (``OT_WEBHOOKS_PROCESSES``), for a host with cores to spare.

One Python process answers and applies on one core. Where a pod (or a host without an orchestrator)
has more, ``serve`` starts this many copies of itself, each a whole service with its own clients,
workers and sweep, listening on the same port with ``SO_REUSEPORT`` so that the kernel spreads the
connections over them. Nothing is shared between them but Cosmos DB, which already makes them safe
together as it makes replicas safe: an event record is created once, transaction writes are
ETag-guarded, settling twice is a no-op.

With ``OT_WEBHOOKS_APPLY_PROCESSES`` above 0 the set is split by kind (``webhooks/handoff.py``): the
``OT_WEBHOOKS_PROCESSES`` on the port only answer, and each hands what it records through a pipe of
its own to one of the apply processes (answer process ``i`` to apply process ``i`` modulo their
number), which apply it at a lower CPU priority and run the sweep.

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

CHILD_SETTINGS = {
    "OT_WEBHOOKS_PROCESSES": "1",
    "OT_WEBHOOKS_APPLY_PROCESSES": "0",
    "OT_WEBHOOKS_REUSE_PORT": "true",
}
"""What makes a child serve alone on the shared port."""
HAND_OFF_FD = "OT_WEBHOOKS_HAND_OFF_FD"
APPLY_FROM_FDS = "OT_WEBHOOKS_APPLY_FROM_FDS"

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve_processes(count: int, *, apply_count: int = 0, environ: Mapping[str, str] | None = None) -> int:
    """Run ``count`` server processes on one port (and ``apply_count`` apply processes) until they stop.

    The exit code: 0 when they stopped on a signal, 1 when one exited by itself.
    """
    env = {**(os.environ if environ is None else environ), **CHILD_SETTINGS}
    children = _start(count, apply_count, env)
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children, signum)

    for each in STOP_SIGNALS:
        signal.signal(each, forward)
    log.info(
        "webhooks processes started",
        processes=count,
        apply_processes=apply_count,
        pids=[child.pid for child in children],
    )
    first = _wait_for_any(children)
    crashed = not stopping
    if crashed:
        log.error("a webhooks process exited; stopping the others", pid=first.pid, code=first.returncode)
        _signal_all(children, signal.SIGTERM)
    codes = [child.wait() for child in children]
    return 1 if crashed or any(codes) else 0


def _start(count: int, apply_count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "webhooks", "serve"]
    if not apply_count:
        return [subprocess.Popen(command, env=env) for _ in range(count)]  # noqa: S603 - our own module
    pipes = [os.pipe() for _ in range(count)]
    try:
        # Each child gets its own ends only (``pass_fds``): a pipe ends for its apply process when
        # its answer process exits, which is how the apply process knows the answers are over.
        answerers = [
            subprocess.Popen(command, env={**env, HAND_OFF_FD: str(write)}, pass_fds=(write,))  # noqa: S603
            for _, write in pipes
        ]
        reads = [
            [read for n, (read, _) in enumerate(pipes) if n % apply_count == k] for k in range(apply_count)
        ]
        appliers = [
            subprocess.Popen(  # noqa: S603 - our own module
                command, env={**env, APPLY_FROM_FDS: ",".join(map(str, fds))}, pass_fds=tuple(fds)
            )
            for fds in reads
        ]
    finally:
        for read, write in pipes:
            os.close(read)
            os.close(write)
    return answerers + appliers


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
