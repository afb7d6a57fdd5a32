"""The store contract against the in-memory fake and against Cosmos DB (the devstack stand-in)."""

from __future__ import annotations

import re

import pytest
from azure.cosmos import PartitionKey
from store_contract import BY_MARKER, CONTRACT_QUERIES, StoreContract

from otcommon.store import CosmosContainer, InMemoryContainer, StoreError, UnsupportedQueryError


class TestInMemoryContainer(StoreContract):
    @pytest.fixture
    def container(self):
        return InMemoryContainer("contract", partition_key_path="/eventId", queries=CONTRACT_QUERIES)

    async def test_a_query_without_an_evaluator_is_refused_by_name(self, container):
        query = "SELECT DISTINCT c.marker FROM c"
        with pytest.raises(UnsupportedQueryError, match=re.escape(query)):
            await anext(container.query(query))

    async def test_a_continuation_of_another_query_is_refused(self, container):
        for n in range(3):
            await container.create({"id": f"d{n}", "eventId": "ev1", "marker": "m", "n": n})
        first = await anext(container.query(BY_MARKER, parameters={"@marker": "m"}, page_size=1))
        with pytest.raises(StoreError, match="does not belong"):
            await anext(
                container.query(BY_MARKER, parameters={"@marker": "other"}, continuation=first.continuation)
            )


@pytest.mark.integration
class TestCosmosContainer(StoreContract):
    @pytest.fixture
    async def container(self, cosmos_client, cosmos_connection):
        database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
        proxy = await database.create_container_if_not_exists(
            "store-contract", partition_key=PartitionKey(path="/eventId")
        )
        return CosmosContainer(proxy, partition_key_path="/eventId")
