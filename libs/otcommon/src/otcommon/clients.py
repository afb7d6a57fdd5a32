"""The Azure clients every service opens the same way: Cosmos DB (provisioned) and Service Bus."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otcommon.bus import client_from_connection_string, client_from_namespace
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, create_cosmos_client, provision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from azure.core.credentials_async import AsyncTokenCredential
    from azure.cosmos.aio import CosmosClient
    from azure.servicebus.aio import ServiceBusClient

    from otcommon.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class AzureClients:
    """Open clients of one service; containers are taken from the one topology declaration."""

    cosmos: CosmosClient
    bus: ServiceBusClient
    database: str

    def container(self, name: str) -> CosmosContainer:
        """The store interface over one declared container."""
        return CosmosContainer.of(self.cosmos, database=self.database, spec=DEFAULT_TOPOLOGY.container(name))


@contextlib.asynccontextmanager
async def open_cosmos(settings: ServiceSettings) -> AsyncIterator[CosmosClient]:
    """Cosmos DB alone, as ``open_azure_clients`` opens it but not provisioned: for a helper process
    of a service whose main process has provisioned it."""
    async with contextlib.AsyncExitStack() as stack:
        credential = None
        if settings.cosmos.uses_entra_id:
            from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - only Entra ID needs it

            credential = await stack.enter_async_context(DefaultAzureCredential())
        yield await stack.enter_async_context(
            create_cosmos_client(settings.cosmos, credential=credential, user_agent=settings.service_name)
        )


@contextlib.asynccontextmanager
async def open_azure_clients(settings: ServiceSettings) -> AsyncIterator[AzureClients]:
    """Open Cosmos DB (and provision it, idempotently) and Service Bus; close both at exit.

    Keys or connection strings when the settings give them, else Microsoft Entra ID through one
    ``DefaultAzureCredential`` shared by both clients.
    """
    async with contextlib.AsyncExitStack() as stack:
        credential = None
        if settings.cosmos.uses_entra_id or settings.servicebus.connection_string is None:
            from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - only Entra ID needs it

            credential = await stack.enter_async_context(DefaultAzureCredential())
        cosmos = await stack.enter_async_context(
            create_cosmos_client(settings.cosmos, credential=credential, user_agent=settings.service_name)
        )
        await provision(cosmos, database=settings.cosmos.database, topology=DEFAULT_TOPOLOGY)
        bus = await stack.enter_async_context(_servicebus_client(settings, credential))
        yield AzureClients(cosmos=cosmos, bus=bus, database=settings.cosmos.database)


def _servicebus_client(
    settings: ServiceSettings, credential: AsyncTokenCredential | None
) -> ServiceBusClient:
    connection = settings.servicebus
    if connection.connection_string is not None:
        return client_from_connection_string(
            connection_string=connection.connection_string.get_secret_value()
        )
    assert connection.fully_qualified_namespace is not None  # noqa: S101 - settings validated it
    assert credential is not None  # noqa: S101 - created above for Entra ID
    return client_from_namespace(
        fully_qualified_namespace=connection.fully_qualified_namespace, credential=credential
    )
