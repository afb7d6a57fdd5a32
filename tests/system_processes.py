"""What every system test does around the services' own processes: a fresh database, the settings a
service reads from its environment, `python -m <service> ...` run to its end or served until /readyz
answers, lines awaited on a process's output, and a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, TypeVar

import aiohttp

from devstack.cosmos import connection_string as cosmos_connection_string
from devstack.servicebus.testing import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from pathlib import Path

    from otcommon.settings import CosmosConnection

T = TypeVar("T")

READY_SECONDS = 90
STOP_SECONDS = 60
# For a service that opens no Service Bus link: the shared settings still want a connection string.
NO_SERVICEBUS = (
    "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;"
)
OPENTICKETS_SANDBOX_CLIENT = {
    "OT_OPENTICKETS_CLIENT_ID": "sandbox-client",
    "OT_OPENTICKETS_CLIENT_SECRET": "sandbox-secret",
}


def service_env(
    cosmos: CosmosConnection, database: str, *, servicebus: str = NO_SERVICEBUS, **settings: str
) -> dict[str, str]:
    """The environment of a service process: this one's, the stores to use, JSON logs, and ``settings``."""
    return {
        **os.environ,
        "OT_COSMOS_CONNECTION_STRING": cosmos_connection_string(cosmos.endpoint),
        "OT_COSMOS_DATABASE": database,
        "OT_SERVICEBUS_CONNECTION_STRING": servicebus,
        "OT_LOG_FORMAT": "json",
        **settings,
    }


@dataclass(frozen=True)
class Finished:
    """What a process that ran to its end left: its exit code and its output."""

    code: int
    out: str
    err: str


async def spawn(
    module: str,
    *args: str,
    env: dict[str, str],
    stdout: int | IO[bytes] = asyncio.subprocess.DEVNULL,
    stderr: int | IO[bytes] = asyncio.subprocess.DEVNULL,
) -> asyncio.subprocess.Process:
    """Start `python -m MODULE ARGS` with ``env``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, env=env, stdout=stdout, stderr=stderr
    )


async def run(module: str, *args: str, env: dict[str, str], timeout: float = 120) -> Finished:
    """Run `python -m MODULE ARGS` to its end (at most ``timeout`` seconds) and collect its output."""
    process = await spawn(
        module, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def serve(
    module: str, *, env: dict[str, str], port_setting: str, log: Path | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m MODULE serve` on a free port (``port_setting``), once its /readyz answers 200.

    Its base address comes with it; its stderr goes to ``log`` when given, which a failure then shows.
    """
    port = free_port()
    env = {**env, port_setting: str(port)}
    if log is None:
        process = await spawn(module, "serve", env=env)
    else:
        with log.open("wb") as stderr:
            process = await spawn(module, "serve", env=env, stderr=stderr)
    base = f"http://127.0.0.1:{port}"

    def why() -> str:
        return log.read_text() if log else f"{module} exited before it was ready"

    await until_ready(process, f"{base}/readyz", why=why)
    return process, base


async def until_ready(process: asyncio.subprocess.Process, url: str, *, why: Callable[[], str]) -> None:
    """Poll ``url`` until it answers 200; fail with ``why()`` as soon as the process exits instead."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(READY_SECONDS):
        while True:
            assert process.returncode is None, why()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.2)  # polling another process's readiness, as a load balancer does


async def stop(process: asyncio.subprocess.Process, *, timeout: float = STOP_SECONDS) -> int:
    """SIGTERM, as Kubernetes stops a pod, and the exit code once the process has ended."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(timeout):
        return await process.wait()


async def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL, a crash: nothing of the process's own runs."""
    process.send_signal(signal.SIGKILL)
    await process.wait()


@contextlib.asynccontextmanager
async def serving(module: str, *, env: dict[str, str], port_setting: str) -> AsyncIterator[str]:
    """`python -m MODULE serve` (see `serve`), yielded as its base address and stopped on exit."""
    process, base = await serve(module, env=env, port_setting=port_setting)
    try:
        yield base
    finally:
        await stop(process)


async def line_containing(stream: asyncio.StreamReader | None, text: str, *, timeout: float) -> None:
    """Read ``stream`` until a line contains ``text``; fail, with what was read, if it ends first."""
    assert stream is not None, "the stream is not piped"
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while text not in (line := (await stream.readline()).decode()):
            assert line, f"the output ended before {text!r}: {''.join(seen)}"
            seen.append(line)


async def wait_for(probe: Callable[[], Awaitable[T]], *, timeout: float, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not (result := await probe()):
            await asyncio.sleep(interval)
    return result


def lines_until(process: subprocess.Popen[str], text: str) -> str:
    """What a process printed up to and including the first line containing ``text`` (or to its end)."""
    assert process.stdout is not None, "stdout is not piped"
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        if text in line:
            break
    return "".join(output)


@contextlib.contextmanager
def started(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``command`` as a process whose output (stdout and stderr) is one text pipe.

    On exit it is killed if the test left it running (a failed assertion, a timeout).
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
