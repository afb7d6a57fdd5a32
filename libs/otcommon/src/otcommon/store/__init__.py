"""Cosmos DB plumbing: the store interface, its Cosmos and in-memory implementations, provisioning."""

from otcommon.store.coalescing import CoalescingContainer
from otcommon.store.cosmos import CosmosContainer, ProvisionReport, create_cosmos_client, provision
from otcommon.store.errors import (
    BatchWriteError,
    ConflictError,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    PatchTooLargeError,
    StoreError,
    TopologyMismatchError,
    UnsupportedQueryError,
)
from otcommon.store.hashing import CONTENT_HASH_FIELD, content_hash
from otcommon.store.interface import (
    DEFAULT_WRITE_ATTEMPTS,
    MAX_BATCH_OPERATIONS,
    MAX_PATCH_OPERATIONS,
    BatchWrite,
    Change,
    Document,
    DocumentContainer,
    Patch,
    PatchOperation,
    QueryPage,
    WriteOutcome,
    partition_key_value,
    read_modify_write,
    upsert_if_changed,
)
from otcommon.store.memory import InMemoryContainer, QueryEvaluator
from otcommon.store.topology import DEFAULT_TOPOLOGY, CompositeIndex, ContainerSpec, Topology

__all__ = [
    "CONTENT_HASH_FIELD",
    "DEFAULT_TOPOLOGY",
    "DEFAULT_WRITE_ATTEMPTS",
    "MAX_BATCH_OPERATIONS",
    "MAX_PATCH_OPERATIONS",
    "BatchWrite",
    "BatchWriteError",
    "Change",
    "CoalescingContainer",
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
    "Patch",
    "PatchOperation",
    "PatchTooLargeError",
    "ProvisionReport",
    "QueryEvaluator",
    "QueryPage",
    "StoreError",
    "Topology",
    "TopologyMismatchError",
    "UnsupportedQueryError",
    "WriteOutcome",
    "content_hash",
    "create_cosmos_client",
    "partition_key_value",
    "provision",
    "read_modify_write",
    "upsert_if_changed",
]
