"""Cosmos DB plumbing: the store interface, its Cosmos and in-memory implementations, provisioning."""

from otcommon.store.cosmos import CosmosContainer, ProvisionReport, create_cosmos_client, provision
from otcommon.store.errors import (
    BatchWriteError,
    ConflictError,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    StoreError,
    TopologyMismatchError,
)
from otcommon.store.hashing import CONTENT_HASH_FIELD, content_hash
from otcommon.store.interface import (
    MAX_BATCH_OPERATIONS,
    BatchWrite,
    Document,
    DocumentContainer,
    PatchOperation,
    UpsertOutcome,
    partition_key_value,
    read_modify_write,
    upsert_if_changed,
)
from otcommon.store.memory import InMemoryContainer
from otcommon.store.topology import DEFAULT_TOPOLOGY, CompositeIndex, ContainerSpec, Topology

__all__ = [
    "CONTENT_HASH_FIELD",
    "DEFAULT_TOPOLOGY",
    "MAX_BATCH_OPERATIONS",
    "BatchWrite",
    "BatchWriteError",
    "CompositeIndex",
    "ConflictError",
    "ContainerSpec",
    "CosmosContainer",
    "Document",
    "DocumentContainer",
    "DocumentExistsError",
    "DocumentNotFoundError",
    "EtagMismatchError",
    "InMemoryContainer",
    "PatchOperation",
    "ProvisionReport",
    "StoreError",
    "Topology",
    "TopologyMismatchError",
    "UpsertOutcome",
    "content_hash",
    "create_cosmos_client",
    "partition_key_value",
    "provision",
    "read_modify_write",
    "upsert_if_changed",
]
