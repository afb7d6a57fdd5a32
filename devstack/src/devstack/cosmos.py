"""The Cosmos DB stand-in: the patched ``@vercel/cosmosdb-server`` started with keep-alive."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from devstack.processes import ManagedProcess, start_process
from otcommon.settings import CosmosConnection

# The stand-in accepts any key; this one is the well-known key of Microsoft's Cosmos DB emulator,
# so the same connection string works against either.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
READY_PATTERN = r"cosmos stand-in ready on (?P<endpoint>http://\S+)"


def node_project_dir() -> Path:
    """The folder with ``package.json`` and the installed npm packages (``devstack/``)."""
    override = os.environ.get("OT_DEVSTACK_NODE_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2]


def server_command(*, host: str, port: int) -> list[str]:
    """The command that runs the stand-in; explains how to install it when it is missing."""
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not on PATH: the Cosmos DB stand-in needs Node.js 20")
    project = node_project_dir()
    if not (project / "node_modules" / "@vercel" / "cosmosdb-server").is_dir():
        raise FileNotFoundError(
            f"the Cosmos DB stand-in is not installed in {project}: run `make setup` (npm ci there)"
        )
    return [node, str(project / "cosmos" / "server.js"), "--host", host, "--port", str(port)]


def start_cosmos(*, host: str = "127.0.0.1", port: int = 0, timeout_seconds: float = 30.0) -> ManagedProcess:
    """Start the stand-in (port 0 picks a free one) and wait until it listens."""
    return start_process(
        "cosmos",
        server_command(host=host, port=port),
        ready_pattern=READY_PATTERN,
        timeout_seconds=timeout_seconds,
        cwd=node_project_dir(),
    )


def connection_for(process: ManagedProcess, *, database: str) -> CosmosConnection:
    """Connection settings for a started stand-in."""
    return CosmosConnection(
        endpoint=process.ready["endpoint"], key=SecretStr(EMULATOR_KEY), database=database
    )


def connection_string(endpoint: str) -> str:
    """The connection string services take (``OT_COSMOS_CONNECTION_STRING``)."""
    return f"AccountEndpoint={endpoint};AccountKey={EMULATOR_KEY};"


async def advance_clock(endpoint: str, *, seconds: float) -> float:
    """Move the stand-in's clock forward (its own route, not Cosmos DB's); returns its time in epoch ms.

    Tests use it to see time-to-live expiry and point-in-time change feed starts without waiting.
    """
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{endpoint.rstrip('/')}/_devstack/clock", json={"advanceSeconds": seconds}
        )
        response.raise_for_status()
        body = await response.json()
    return float(body["nowMs"])
