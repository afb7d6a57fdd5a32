"""Child processes that announce readiness with a line on stdout, and stop with their whole group."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class StartupError(RuntimeError):
    """A stand-in did not become ready; the message carries its last output."""


@dataclass
class ManagedProcess:
    """A started stand-in: its process, the match of its ready line and its recent output."""

    name: str
    process: subprocess.Popen[str]
    ready: re.Match[str]
    output_tail: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.process.pid

    def stop(self, *, grace_seconds: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace_seconds``."""
        _stop_group(self.process, grace_seconds=grace_seconds)
        return self.process.returncode


def start_process(
    name: str,
    command: Sequence[str],
    *,
    ready_pattern: str,
    timeout_seconds: float = 30.0,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """Start ``command`` in its own process group and wait until a stdout line matches ``ready_pattern``."""
    process = subprocess.Popen(  # noqa: S603 - commands are built by this package, not from input
        list(command),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True, name=f"{name}-out").start()
    pattern = re.compile(ready_pattern)
    tail: list[str] = []
    try:
        ready = _wait_for_ready(lines, pattern, tail, timeout_seconds)
    except BaseException:
        # Interrupted while waiting (Ctrl-C, SIGTERM): the half-started child goes too.
        _stop_group(process)
        raise
    if ready is None:
        _stop_group(process)
        output = "".join(tail).strip() or "(no output)"
        raise StartupError(
            f"{name} did not become ready within {timeout_seconds:.0f}s; its output:\n{output}"
        )
    threading.Thread(target=_drain, args=(lines,), daemon=True, name=f"{name}-drain").start()
    return ManagedProcess(name=name, process=process, ready=ready, output_tail=tail)


def _wait_for_ready(
    lines: queue.Queue[str | None], pattern: re.Pattern[str], tail: list[str], timeout_seconds: float
) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout_seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(remaining, 0.5))
        except queue.Empty:
            continue
        if line is None:
            return None
        tail[:] = [*tail[-19:], line]
        if match := pattern.search(line):
            return match
    return None


def _stop_group(process: subprocess.Popen[str], *, grace_seconds: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)


def _drain(lines: queue.Queue[str | None]) -> None:
    # Keep reading so a chatty child never blocks on a full pipe.
    while lines.get() is not None:
        pass
