"""Run the emulator as a subprocess for tests and local stacks (`with running_emulator(config) as e:`)."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devstack.servicebus.cli import DEFAULT_KEY, DEFAULT_KEY_NAME, READY_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0


class EmulatorStartError(RuntimeError):
    """The emulator exited or stayed silent instead of announcing it was ready."""


@dataclass(frozen=True)
class RunningEmulator:
    """A started emulator: where it listens and how to reach it."""

    host: str
    port: int
    key_name: str
    key: str
    process: subprocess.Popen[str]

    @property
    def connection_string(self) -> str:
        return connection_string(host=self.host, port=self.port, key_name=self.key_name, key=self.key)


def connection_string(
    *, host: str, port: int, key_name: str = DEFAULT_KEY_NAME, key: str = DEFAULT_KEY
) -> str:
    """The connection string the SDK needs to reach an emulator (plain AMQP, no TLS)."""
    endpoint_host = "localhost" if host in {"127.0.0.1", "localhost"} else host
    return (
        f"Endpoint=sb://{endpoint_host}:{port};SharedAccessKeyName={key_name};"
        f"SharedAccessKey={key};UseDevelopmentEmulator=true;"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _wait_for_ready(process: subprocess.Popen[str], timeout: float) -> None:
    assert process.stdout is not None  # noqa: S101 - stdout is a pipe by construction
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                break
            line = process.stdout.readline()
            if not line:
                raise EmulatorStartError(
                    f"the emulator exited with code {process.wait(STOP_TIMEOUT_SECONDS)}"
                )
            if line.startswith(READY_PREFIX):
                return
    raise EmulatorStartError(f"the emulator did not report ready within {timeout:.0f} s")


def stop_emulator(process: subprocess.Popen[str], timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """Terminate the process, then kill it if it has not exited within `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process.stdout is not None:
        process.stdout.close()
    return int(process.returncode)


@contextlib.contextmanager
def running_emulator(
    config: Path,
    *,
    data_file: Path | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    key_name: str = DEFAULT_KEY_NAME,
    key: str = DEFAULT_KEY,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> Iterator[RunningEmulator]:
    """Start the emulator on a free port, wait for its ready line, yield it, and stop it afterwards."""
    chosen_port = port if port is not None else free_port(host)
    command = [
        sys.executable, "-m", "devstack.servicebus",
        "--config", str(config), "--port", str(chosen_port), "--host", host,
        "--key-name", key_name, "--key", key,
    ]  # fmt: skip
    if data_file is not None:
        command += ["--data-file", str(data_file)]
    process = subprocess.Popen(  # noqa: S603 - runs this interpreter with fixed arguments
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        _wait_for_ready(process, ready_timeout)
        yield RunningEmulator(host=host, port=chosen_port, key_name=key_name, key=key, process=process)
    finally:
        stop_emulator(process)
