"""The store contract against the in-memory fake and against Cosmos DB (the devstack stand-in)."""

from __future__ import annotations

import pytest
from azure.cosmos import PartitionKey
from store_contract import StoreContract

from otcommon.store import CosmosContainer, InMemoryContainer


class TestInMemoryContainer(StoreContract):
    @pytest.fixture
    def container(self):
        return InMemoryContainer("contract", partition_key_path="/eventId")


@pytest.mark.integration
class TestCosmosContainer(StoreContract):
    @pytest.fixture
    async def container(self, cosmos_client, cosmos_connection):
        database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
        proxy = await database.create_container_if_not_exists(
            "store-contract", partition_key=PartitionKey(path="/eventId")
        )
        return CosmosContainer(proxy, partition_key_path="/eventId")
