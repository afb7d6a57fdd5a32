"""The Azure clients every service opens through ``open_azure_clients``, against the stand-ins."""

from __future__ import annotations

import uuid

import pytest

from otcommon.clients import open_azure_clients
from otcommon.settings import ServiceSettings
from otcommon.store import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.integration


async def test_clients_open_provisioned_containers_and_the_bus(
    cosmos_connection, servicebus_connection_string
):
    database = f"clients-{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(
        cosmos_endpoint=cosmos_connection.endpoint,
        cosmos_key=cosmos_connection.key,
        cosmos_database=database,
        servicebus_connection_string=servicebus_connection_string,
    )
    async with open_azure_clients(settings) as clients:
        # Provisioned on open: every declared container exists in the settings' database.
        names = {c["id"] async for c in clients.cosmos.get_database_client(database).list_containers()}
        assert names == {spec.name for spec in DEFAULT_TOPOLOGY.containers}
        state = clients.container("state")
        await state.create({"id": "probe", state.partition_key_path.strip("/"): "probe"})
        assert (await state.read("probe", partition_key="probe"))["id"] == "probe"
        async with clients.bus.get_queue_receiver("stripe-enrichment-queue") as receiver:
            assert isinstance(await receiver.peek_messages(max_message_count=1), list)
        await clients.cosmos.delete_database(database)
