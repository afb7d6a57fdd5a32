"""pytest fixtures that start the stand-ins once per test session, on free ports.

When connection settings for a real service are in the environment, the fixtures use them and
start nothing, so the same integration tests run against Azure (or Microsoft's emulators):

- ``OT_TEST_COSMOS_CONNECTION_STRING``, or ``OT_TEST_COSMOS_ENDPOINT`` with ``OT_TEST_COSMOS_KEY``
  (without a key, ``DefaultAzureCredential``). Each session then works in its own database,
  ``test-<random>``, deleted at the end.
- ``OT_TEST_SERVICEBUS_CONNECTION_STRING``: a namespace with the project's topology
  (``deploy/servicebus/Config.json``) applied.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from azure.cosmos.exceptions import CosmosResourceNotFoundError
from pydantic import SecretStr

from devstack import cosmos
from devstack.paths import project_topology
from devstack.servicebus.testing import RunningEmulator, running_emulator
from otcommon.settings import CosmosConnection, parse_connection_string
from otcommon.store import DEFAULT_TOPOLOGY, ProvisionReport, create_cosmos_client, provision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    from azure.cosmos.aio import CosmosClient


def external_cosmos(database: str) -> CosmosConnection | None:
    """Cosmos DB settings given in the environment for tests, if any."""
    if connection_string := os.environ.get("OT_TEST_COSMOS_CONNECTION_STRING"):
        parts = parse_connection_string(connection_string)
        key = parts.get("accountkey")
        return CosmosConnection(
            endpoint=parts["accountendpoint"], key=SecretStr(key) if key else None, database=database
        )
    if endpoint := os.environ.get("OT_TEST_COSMOS_ENDPOINT"):
        key = os.environ.get("OT_TEST_COSMOS_KEY")
        return CosmosConnection(endpoint=endpoint, key=SecretStr(key) if key else None, database=database)
    return None


@contextlib.asynccontextmanager
async def fresh_database(cosmos_client: CosmosClient, prefix: str) -> AsyncIterator[str]:
    """A provisioned database of the test's own, ``<prefix>-<random>``, deleted at the end."""
    database = f"{prefix}-{uuid.uuid4().hex[:10]}"
    await provision(cosmos_client, database=database, topology=DEFAULT_TOPOLOGY)
    try:
        yield database
    finally:
        await cosmos_client.delete_database(database)


@pytest.fixture(scope="session")
def cosmos_connection() -> Iterator[CosmosConnection]:
    """Connection settings for a Cosmos DB to test against (the stand-in unless one is configured)."""
    database = f"test-{uuid.uuid4().hex[:12]}"
    if (external := external_cosmos(database)) is not None:
        yield external
        return
    process = cosmos.start_cosmos(port=0)
    try:
        yield cosmos.connection_for(process, database=database)
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="session")
async def cosmos_client(cosmos_connection: CosmosConnection) -> AsyncIterator[CosmosClient]:
    """An SDK client for the session; its test database is removed at the end."""
    async with create_cosmos_client(cosmos_connection) as client:
        try:
            yield client
        finally:
            with contextlib.suppress(CosmosResourceNotFoundError):
                await client.delete_database(cosmos_connection.database)


@pytest_asyncio.fixture(scope="session")
async def provisioned(cosmos_client: CosmosClient, cosmos_connection: CosmosConnection) -> ProvisionReport:
    """The project's database and containers, provisioned once for the session."""
    return await provision(cosmos_client, database=cosmos_connection.database, topology=DEFAULT_TOPOLOGY)


@pytest.fixture(scope="session")
def servicebus_connection_string() -> Iterator[str]:
    """A Service Bus with the project's topology: the emulator, unless one is configured."""
    if external := os.environ.get("OT_TEST_SERVICEBUS_CONNECTION_STRING"):
        yield external
        return
    with running_emulator(project_topology()) as emulator:
        yield emulator.connection_string


@pytest.fixture
def start_servicebus() -> Callable[..., AbstractContextManager[RunningEmulator]]:
    """Start an emulator of one's own (fresh queues, a data file, a restart): ``with start_servicebus():``."""

    def start(
        *, config: Path | None = None, data_file: Path | None = None, port: int | None = None
    ) -> AbstractContextManager[RunningEmulator]:
        return running_emulator(config or project_topology(), data_file=data_file, port=port)

    return start
