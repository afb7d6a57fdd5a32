"""Run the sandbox for tests: in-process on a free port, or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.opentickets.app import create_app
from devstack.opentickets.cli import READY_PREFIX
from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.state import SandboxState
from devstack.sandbox.server import serve_in_process

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    import aiohttp

    from devstack.sandbox.faults import FaultController
    from devstack.scenario import Changes, Scenario

STOP_TIMEOUT_S = 10.0
MAX_PAGES = 100_000


@dataclass(frozen=True)
class SandboxHandle:
    """A running in-process sandbox: its URL, its data and its fault switches."""

    base_url: str
    state: SandboxState

    @property
    def settings(self) -> SandboxSettings:
        """The settings it was started with (credentials included)."""
        return self.state.settings

    @property
    def scenario(self) -> Scenario:
        """The scenario it serves (replaced by `reset()`)."""
        return self.state.scenario

    @property
    def faults(self) -> FaultController:
        """The fault switches (replaced by `reset()`)."""
        return self.state.faults

    def advance(self, *, minutes: float, refunds: int = 0, disputes: int = 0, scans: int = 0) -> Changes:
        """Move the scenario clock, keeping the API's paging in step."""
        return self.state.advance(minutes=minutes, refunds=refunds, disputes=disputes, scans=scans)

    def add_order_paid_by(self, paid_order_id: str) -> Changes:
        """Reveal a new order, bought now, paid by the payment of the visible order ``paid_order_id``."""
        return self.state.add_order_paid_by(paid_order_id)


@contextlib.asynccontextmanager
async def run_sandbox(
    *, settings: SandboxSettings | None = None, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[SandboxHandle]:
    """Serve the sandbox on a free 127.0.0.1 port inside the running event loop."""
    settings = settings or SandboxSettings()
    state = SandboxState(settings=settings, clock=clock)
    async with serve_in_process(create_app(settings, state=state)) as base_url:
        yield SandboxHandle(base_url=base_url, state=state)


@dataclass(frozen=True)
class SandboxProcess:
    """A sandbox running as a child process."""

    base_url: str
    process: asyncio.subprocess.Process


@contextlib.asynccontextmanager
async def run_sandbox_process(
    *, args: Sequence[str] = (), startup_timeout: float = 30.0
) -> AsyncIterator[SandboxProcess]:
    """Start `python -m devstack.opentickets --port 0 ARGS`, wait for its ready line, stop it on exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.opentickets",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        base_url = await asyncio.wait_for(_ready_url(process), timeout=startup_timeout)
        yield SandboxProcess(base_url=base_url, process=process)
    finally:
        await _stop(process)


async def _ready_url(process: asyncio.subprocess.Process) -> str:
    if process.stdout is None:  # pragma: no cover - stdout is always piped above
        raise RuntimeError("sandbox stdout is not piped")
    line = (await process.stdout.readline()).decode().strip()
    if not line.startswith(READY_PREFIX):
        raise RuntimeError(f"sandbox exited before it was ready (exit status {await process.wait()})")
    return line.removeprefix(READY_PREFIX).strip()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


def api_key_headers(settings: SandboxSettings) -> dict[str, str]:
    """Headers that authenticate with the sandbox's API key."""
    return {"X-Api-Key": settings.api_key}


async def fetch_all_transactions(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    between_pages: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Every row of `GET /v1/transactions`, following `nextCursor` to the end (at most MAX_PAGES pages)."""
    rows: list[dict[str, Any]] = []
    query = dict(params or {})
    for _ in range(MAX_PAGES):
        async with session.get(f"{base_url}/v1/transactions", params=query, headers=headers) as response:
            response.raise_for_status()
            body = await response.json()
        rows.extend(body["data"])
        if body["nextCursor"] is None:
            return rows
        query["cursor"] = body["nextCursor"]
        if between_pages is not None:
            between_pages()
    raise RuntimeError(f"paging did not end within {MAX_PAGES} pages")
