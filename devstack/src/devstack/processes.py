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
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=grace_seconds)
        # Children of the group that outlived their parent are ended too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
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
    deadline = time.monotonic() + timeout_seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(remaining, 0.5))
        except queue.Empty:
            continue
        if line is None:
            break
        tail = [*tail[-19:], line]
        if match := pattern.search(line):
            managed = ManagedProcess(name=name, process=process, ready=match, output_tail=tail)
            threading.Thread(target=_drain, args=(lines,), daemon=True, name=f"{name}-drain").start()
            return managed
    ManagedProcess(name=name, process=process, ready=re.match("", ""), output_tail=tail).stop()  # type: ignore[arg-type]
    output = "".join(tail).strip() or "(no output)"
    raise StartupError(f"{name} did not become ready within {timeout_seconds:.0f}s; its output:\n{output}")


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)


def _drain(lines: queue.Queue[str | None]) -> None:
    # Keep reading so a chatty child never blocks on a full pipe.
    while lines.get() is not None:
        pass
