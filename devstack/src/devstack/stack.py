"""The whole local stack: every stand-in started, Cosmos DB provisioned, settings for the services."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devstack import cosmos
from otcommon.store import DEFAULT_TOPOLOGY, ProvisionReport, create_cosmos_client, provision

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.processes import ManagedProcess
    from otcommon.settings import CosmosConnection


@dataclass(frozen=True, slots=True)
class StackPorts:
    """Where each stand-in listens (0 picks a free port)."""

    host: str = "127.0.0.1"
    cosmos: int = 8081


@dataclass
class Stack:
    """Started stand-ins, stopped in reverse order."""

    database: str = "opentickets"
    processes: list[ManagedProcess] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)

    def start(self, ports: StackPorts, *, on_progress: Callable[[str], None] = lambda _: None) -> None:
        """Start every stand-in and provision Cosmos DB; on any failure stop what started."""
        try:
            on_progress("starting the Cosmos DB stand-in")
            cosmos_process = cosmos.start_cosmos(host=ports.host, port=ports.cosmos)
            self.processes.append(cosmos_process)
            connection = cosmos.connection_for(cosmos_process, database=self.database)
            on_progress(f"provisioning database {self.database!r}")
            report = asyncio.run(provision_database(connection))
            on_progress("containers: " + ", ".join(f"{k} ({v})" for k, v in report.containers.items()))
            self.endpoints["cosmos"] = connection.endpoint
            self.environment["OT_COSMOS_CONNECTION_STRING"] = cosmos.connection_string(connection.endpoint)
            self.environment["OT_COSMOS_DATABASE"] = self.database
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every started process, last started first."""
        while self.processes:
            process = self.processes.pop()
            with contextlib.suppress(Exception):
                process.stop()


async def provision_database(connection: CosmosConnection) -> ProvisionReport:
    """Create the database and the declared containers (idempotent)."""
    async with create_cosmos_client(connection) as client:
        return await provision(client, database=connection.database, topology=DEFAULT_TOPOLOGY)
