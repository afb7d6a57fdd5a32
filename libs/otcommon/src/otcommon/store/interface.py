"""The store interface services depend on, and the algorithms built on it.

``CosmosContainer`` implements it over the azure-cosmos async SDK; ``InMemoryContainer`` is the
fake for unit tests. The shared algorithms (skip unchanged upserts, ETag-guarded
read-modify-write) are plain functions over the interface, so both backends run the same code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from otcommon.store.errors import (
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    PatchTooLargeError,
    StoreError,
)
from otcommon.store.hashing import CONTENT_HASH_FIELD, content_hash

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

Document = dict[str, Any]
PatchOperation = dict[str, Any]
"""``{"op": "set"|"add"|"replace"|"remove"|"incr", "path": "/a/b", "value": ...}`` (Cosmos patch)."""

WriteResult = Literal["created", "updated", "unchanged"]

MAX_BATCH_OPERATIONS = 100
"""Cosmos DB's limit of operations in one transactional batch."""

MAX_PATCH_OPERATIONS = 10
"""Cosmos DB's limit of operations in one patch, alone or inside a batch (Azure answers 400 past it)."""

DEFAULT_WRITE_ATTEMPTS = 8
"""How often a conditional write re-reads and re-decides after losing a race before giving up."""


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

    def __post_init__(self) -> None:
        if self.kind == "patch":
            check_patch_size(str(self.document.get("id")), self.operations)

    @classmethod
    def patch(
        cls, document_id: str, operations: Sequence[PatchOperation], *, etag: str | None = None
    ) -> Self:
        """A patch of one document of the batch's partition."""
        return cls("patch", {"id": document_id}, etag=etag, operations=operations)


def check_patch_size(document_id: str, operations: Sequence[PatchOperation]) -> None:
    """Refuse a patch Cosmos DB would refuse, before it is sent (the in-memory fake refuses it too)."""
    if len(operations) > MAX_PATCH_OPERATIONS:
        raise PatchTooLargeError(document_id, len(operations), MAX_PATCH_OPERATIONS)


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

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[Document]:
        """Up to 100 writes to one partition in one round trip; the documents as written, in order.

        On failure raises BatchWriteError and nothing of the batch is applied (Azure and the local
        stand-in both apply a batch atomically); callers recover item by item, idempotently.
        Without ``return_documents`` the store is asked not to send the written documents back
        (Cosmos DB's ``Prefer: return=minimal``: less to serialize and decode) and each result holds
        only the ``_etag`` the store gave the written document (an empty document when the store's
        answer names none).
        """
        ...

    def find(
        self, where: Mapping[str, Any], *, partition_key: Any = None, page_size: int = 500
    ) -> AsyncIterator[Document]:
        """Documents whose top-level fields equal ``where`` (across partitions unless one is given)."""
        ...

    def query(
        self,
        query: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        partition_key: Any = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AsyncIterator[QueryPage]:
        """Run a parameterised Cosmos SQL query, page by page (no page for an empty result).

        ``parameters`` maps ``@name`` to its value. With ``partition_key`` the query reads that
        partition only, else every partition. ``continuation`` is a page's ``continuation``: the
        query resumes right after that page. Continuations of cross-partition queries that the SDK
        runs per partition range (ORDER BY, aggregates, DISTINCT across partitions) cannot resume
        in Azure: page those per partition. The in-memory fake runs only the queries it was given
        evaluators for (UnsupportedQueryError otherwise).
        """
        ...


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page of a query's results, and where the next page starts."""

    items: list[Document]
    continuation: str | None
    """Pass to ``query(..., continuation=...)`` to resume after this page; None when no page follows."""


def query_parameters(parameters: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Cosmos query parameters (``[{"name": "@x", "value": ...}]``) from ``{"@x": ...}``."""
    named = []
    for name, value in (parameters or {}).items():
        if not (name.startswith("@") and name[1:].isidentifier()):
            raise StoreError(f"query parameter {name!r} must be named like @name")
        named.append({"name": name, "value": value})
    return named


def partition_key_value(document: Mapping[str, Any], path: str) -> Any:
    """The value at a partition key path such as ``/eventId`` or ``/a/b``."""
    value: Any = document
    for part in path.strip("/").split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a conditional write did, and the stored document."""

    result: WriteResult
    document: Document


async def upsert_if_changed(
    container: DocumentContainer, document: Mapping[str, Any], *, attempts: int = DEFAULT_WRITE_ATTEMPTS
) -> WriteOutcome:
    """Write ``document`` unless the stored copy has the same content hash.

    The stored copy's ETag guards the write, so a concurrent change is never overwritten
    blindly: the helper reads again and re-decides.
    """
    digest = content_hash(document)
    body = {**document, CONTENT_HASH_FIELD: digest}

    def unless_unchanged(current: Document) -> Document | None:
        return None if current.get(CONTENT_HASH_FIELD) == digest else body

    return await read_modify_write(
        container,
        str(document["id"]),
        partition_key=partition_key_value(document, container.partition_key_path),
        mutate=unless_unchanged,
        create=lambda: body,
        attempts=attempts,
    )


@dataclass(frozen=True, slots=True)
class Patch:
    """A change sent as Cosmos patch operations instead of the whole document."""

    operations: Sequence[PatchOperation]


Change = Document | Patch | None
"""What a mutation returns: the new document (replace), a :class:`Patch`, or None (no change)."""


async def read_modify_write(
    container: DocumentContainer,
    document_id: str,
    *,
    partition_key: Any,
    mutate: Callable[[Document], Change] | Callable[[Document], Awaitable[Change]],
    create: Callable[[], Document] | Callable[[], Awaitable[Document]] | None = None,
    attempts: int = DEFAULT_WRITE_ATTEMPTS,
    current: Document | None = None,
) -> WriteOutcome:
    """Read, change and write one document with an ETag guard; on a lost race, read again and re-decide.

    ``mutate`` receives a copy of the stored document and returns the replacement, a
    :class:`Patch`, or None to leave it as it is ("unchanged"); it may also raise to abort. When
    the document is absent, ``create`` (sync or async, like ``mutate``) gives the document to
    create; without ``create`` the DocumentNotFoundError propagates. A create that finds the id
    taken, or a write that finds the ETag changed, costs one attempt; when all ``attempts`` are
    used, EtagMismatchError. With ``attempts=1`` this is a single compare-and-swap.

    ``current``, a copy of the document already read (by a query, or kept from an earlier write,
    with its ``_etag``), is decided on first instead of reading it again: a stale copy costs one
    attempt, as a lost race does.
    """
    held = current
    for _ in range(attempts):
        try:
            current = held or await container.read(document_id, partition_key=partition_key)
        except DocumentNotFoundError:
            if create is None:
                raise
            new = create()
            if inspect.isawaitable(new):
                new = await new
            try:
                return WriteOutcome("created", await container.create(new))
            except DocumentExistsError:
                continue  # created concurrently: decide again against that copy
        change = mutate(dict(current))
        if inspect.isawaitable(change):
            change = await change
        try:
            return await _write_change(container, document_id, current, change, partition_key=partition_key)
        except EtagMismatchError:
            held = None
        except DocumentNotFoundError:
            if held is None:
                raise
            held = None  # the copy held was deleted since: decide again on what is stored
    raise EtagMismatchError(container.name, document_id)


async def _write_change(
    container: DocumentContainer, document_id: str, current: Document, change: Change, *, partition_key: Any
) -> WriteOutcome:
    """Write one decided change under the ETag of the copy it was decided on."""
    if change is None:
        return WriteOutcome("unchanged", current)
    if isinstance(change, Patch):
        patched = await container.patch(
            document_id,
            partition_key=partition_key,
            operations=list(change.operations),
            etag=current["_etag"],
        )
        return WriteOutcome("updated", patched)
    return WriteOutcome("updated", await container.replace(change, etag=current["_etag"]))
