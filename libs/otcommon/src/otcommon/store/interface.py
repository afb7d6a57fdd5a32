"""The store interface services depend on, and the algorithms built on it.

``CosmosContainer`` implements it over the azure-cosmos async SDK; ``InMemoryContainer`` is the
fake for unit tests. The shared algorithms (skip unchanged upserts, ETag-guarded
read-modify-write) are plain functions over the interface, so both backends run the same code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from otcommon.store.errors import DocumentExistsError, DocumentNotFoundError, EtagMismatchError
from otcommon.store.hashing import CONTENT_HASH_FIELD, content_hash

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

Document = dict[str, Any]
PatchOperation = dict[str, Any]
"""``{"op": "set"|"add"|"replace"|"remove"|"incr", "path": "/a/b", "value": ...}`` (Cosmos patch)."""

WriteResult = Literal["created", "updated", "unchanged"]

MAX_BATCH_OPERATIONS = 100
"""Cosmos DB's limit of operations in one transactional batch."""


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """One write of a batch: create (fails if the id exists), upsert, replace or patch (ETag-guarded).

    A patch names its document by ``document["id"]`` and changes it by ``operations``; it sends
    only those operations, not the whole document.
    """

    kind: Literal["create", "upsert", "replace", "patch"]
    document: Mapping[str, Any]
    etag: str | None = None
    operations: Sequence[PatchOperation] = ()

    @classmethod
    def patch(
        cls, document_id: str, operations: Sequence[PatchOperation], *, etag: str | None = None
    ) -> Self:
        """A patch of one document of the batch's partition."""
        return cls("patch", {"id": document_id}, etag=etag, operations=operations)


class DocumentContainer(Protocol):
    """One container of documents, partitioned by ``partition_key_path``."""

    @property
    def name(self) -> str: ...

    @property
    def partition_key_path(self) -> str: ...

    async def read(self, document_id: str, *, partition_key: Any) -> Document: ...

    async def create(self, document: Mapping[str, Any]) -> Document: ...

    async def upsert(self, document: Mapping[str, Any]) -> Document: ...

    async def replace(self, document: Mapping[str, Any], *, etag: str | None = None) -> Document: ...

    async def patch(
        self,
        document_id: str,
        *,
        partition_key: Any,
        operations: list[PatchOperation],
        etag: str | None = None,
    ) -> Document: ...

    async def delete(self, document_id: str, *, partition_key: Any, etag: str | None = None) -> None: ...

    async def read_many(self, ids: Sequence[str], *, partition_key: Any) -> dict[str, Document]:
        """The documents of one partition with these ids, keyed by id (absent ids are left out)."""
        ...

    async def write_batch(self, writes: Sequence[BatchWrite], *, partition_key: Any) -> list[Document]:
        """Up to 100 writes to one partition in one round trip.

        On failure raises BatchWriteError. Azure applies a batch atomically; the local stand-in keeps
        the writes before the failing one, so callers recover item by item, idempotently.
        """
        ...

    def find(
        self, where: Mapping[str, Any], *, partition_key: Any = None, page_size: int = 500
    ) -> AsyncIterator[Document]:
        """Documents whose top-level fields equal ``where`` (across partitions unless one is given)."""
        ...


def partition_key_value(document: Mapping[str, Any], path: str) -> Any:
    """The value at a partition key path such as ``/eventId`` or ``/a/b``."""
    value: Any = document
    for part in path.strip("/").split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class UpsertOutcome:
    """What an upsert-if-changed did, and the stored document."""

    result: WriteResult
    document: Document


async def upsert_if_changed(
    container: DocumentContainer, document: Mapping[str, Any], *, attempts: int = 5
) -> UpsertOutcome:
    """Write ``document`` unless the stored copy has the same content hash.

    The stored copy's ETag guards the write, so a concurrent change is never overwritten
    blindly: the loop reads again and re-decides.
    """
    digest = content_hash(document)
    body = {**document, CONTENT_HASH_FIELD: digest}
    key = partition_key_value(document, container.partition_key_path)
    for _ in range(attempts):
        try:
            current = await container.read(str(document["id"]), partition_key=key)
        except DocumentNotFoundError:
            try:
                return UpsertOutcome("created", await container.create(body))
            except DocumentExistsError:
                continue  # created concurrently: compare against that copy
        if current.get(CONTENT_HASH_FIELD) == digest:
            return UpsertOutcome("unchanged", current)
        try:
            return UpsertOutcome("updated", await container.replace(body, etag=current["_etag"]))
        except EtagMismatchError:
            continue
    raise EtagMismatchError(container.name, str(document["id"]))


async def read_modify_write(
    container: DocumentContainer,
    document_id: str,
    *,
    partition_key: Any,
    mutate: Callable[[Document], Document | None] | Callable[[Document], Awaitable[Document | None]],
    attempts: int = 10,
) -> Document:
    """Apply ``mutate`` to the current document and replace it with an ETag guard, retrying on 412.

    ``mutate`` receives a copy and returns the new document, or None to leave it unchanged.
    """
    for _ in range(attempts):
        current = await container.read(document_id, partition_key=partition_key)
        changed = mutate(dict(current))
        if inspect.isawaitable(changed):
            changed = await changed
        if changed is None:
            return current
        try:
            return await container.replace(changed, etag=current["_etag"])
        except EtagMismatchError:
            continue
    raise EtagMismatchError(container.name, document_id)
