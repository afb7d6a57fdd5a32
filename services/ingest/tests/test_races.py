"""Ingest's writes racing the enricher's and another replica's, on the fake and on Cosmos DB."""

from __future__ import annotations

import pytest
from ingest_fakes import container

from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer

# The shared tests live in a helper module: rewrite its asserts too, so a failure shows its values.
pytest.register_assert_rewrite("races_contract")
from races_contract import ReplicaRaces, Stores, WriterRaces  # noqa: E402


class TestRacesInMemory(WriterRaces, ReplicaRaces):
    @pytest.fixture
    def stores(self) -> Stores:
        return Stores(transactions=container("transactions"), state=container("state"))


@pytest.mark.integration
class TestRacesCosmos(WriterRaces, ReplicaRaces):
    @pytest.fixture
    def stores(self, cosmos_client, provisioned) -> Stores:
        def cosmos(name: str) -> CosmosContainer:
            spec = DEFAULT_TOPOLOGY.container(name)
            return CosmosContainer.of(cosmos_client, database=provisioned.database, spec=spec)

        # Each test writes its own event's partition and its own lease of the session's database.
        return Stores(transactions=cosmos("transactions"), state=cosmos("state"))
