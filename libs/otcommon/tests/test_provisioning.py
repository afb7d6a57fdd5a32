"""Declarative provisioning against Cosmos DB (the devstack stand-in, or Azure when configured)."""

from __future__ import annotations

import uuid

import pytest

from otcommon.store import (
    DEFAULT_TOPOLOGY,
    CompositeIndex,
    ContainerSpec,
    CosmosContainer,
    DocumentExistsError,
    Topology,
    TopologyMismatchError,
    provision,
)

pytestmark = pytest.mark.integration


def topology(*, name: str, partition_key: str = "/eventId", composites: int = 1) -> Topology:
    indexes = (
        CompositeIndex((("/PurchaseDate", "descending"), ("/id", "descending"))),
        CompositeIndex((("/TotalAmount", "ascending"), ("/id", "ascending"))),
    )[:composites]
    return Topology(
        containers=(
            ContainerSpec(
                name=name,
                partition_key=partition_key,
                composite_indexes=indexes,
                unique_keys=(("/ticketId",),),
            ),
        )
    )


async def test_project_topology_is_provisioned_and_a_second_run_changes_nothing(
    provisioned, cosmos_client, cosmos_connection
):
    assert set(provisioned.containers) == {spec.name for spec in DEFAULT_TOPOLOGY.containers}
    again = await provision(cosmos_client, database=cosmos_connection.database, topology=DEFAULT_TOPOLOGY)
    assert set(again.containers.values()) == {"unchanged"}


async def test_declared_indexes_and_unique_keys_are_applied(cosmos_client, cosmos_connection):
    name = f"prov-{uuid.uuid4().hex[:8]}"
    report = await provision(cosmos_client, database=cosmos_connection.database, topology=topology(name=name))
    assert report.containers == {name: "created"}
    proxy = cosmos_client.get_database_client(cosmos_connection.database).get_container_client(name)
    properties = await proxy.read()
    assert properties["partitionKey"]["paths"] == ["/eventId"]
    assert properties["indexingPolicy"]["compositeIndexes"] == [
        [{"path": "/PurchaseDate", "order": "descending"}, {"path": "/id", "order": "descending"}]
    ]
    container = CosmosContainer(proxy, partition_key_path="/eventId")
    await container.create({"id": "a", "eventId": "ev1", "ticketId": "T-1"})
    with pytest.raises(DocumentExistsError):
        await container.create({"id": "b", "eventId": "ev1", "ticketId": "T-1"})


async def test_a_changed_indexing_policy_is_replaced(cosmos_client, cosmos_connection):
    name = f"prov-{uuid.uuid4().hex[:8]}"
    database = cosmos_connection.database
    await provision(cosmos_client, database=database, topology=topology(name=name, composites=1))
    report = await provision(cosmos_client, database=database, topology=topology(name=name, composites=2))
    assert report.containers == {name: "updated"}
    proxy = cosmos_client.get_database_client(database).get_container_client(name)
    assert len((await proxy.read())["indexingPolicy"]["compositeIndexes"]) == 2
    again = await provision(cosmos_client, database=database, topology=topology(name=name, composites=2))
    assert again.containers == {name: "unchanged"}


async def test_a_different_partition_key_is_refused_with_a_clear_error(cosmos_client, cosmos_connection):
    name = f"prov-{uuid.uuid4().hex[:8]}"
    database = cosmos_connection.database
    await provision(cosmos_client, database=database, topology=topology(name=name))
    with pytest.raises(TopologyMismatchError, match="partition key cannot change"):
        await provision(cosmos_client, database=database, topology=topology(name=name, partition_key="/id"))
