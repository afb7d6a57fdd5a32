"""An in-memory container with Cosmos DB's write semantics, for unit tests.

It does not parse SQL: a test gives it an evaluator per query text it should answer (a Python
function over the documents in scope and the parameters), and any other query raises
UnsupportedQueryError naming it. Scoping, paging and continuation are the fake's own, shared
by every query, and checked against Cosmos DB by the store contract tests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otcommon.store.errors import (
    BatchWriteError,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    StoreError,
    UnsupportedQueryError,
)
from otcommon.store.interface import QueryPage, check_patch_size, partition_key_value, query_parameters

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence

    from otcommon.store.interface import BatchWrite, Document, PatchOperation

QueryEvaluator = Callable[[list["Document"], dict[str, Any]], "Iterable[Document]"]
"""Answers one query: (the documents in scope, ``{"@name": value}``) -> the result rows, in order."""


class InMemoryContainer:
    """Documents keyed by (partition key, id), each write with a fresh ``_etag`` and ``_ts``."""

    def __init__(
        self,
        name: str,
        *,
        partition_key_path: str,
        queries: Mapping[str, QueryEvaluator] | None = None,
    ) -> None:
        self._name = name
        self._partition_key_path = partition_key_path
        self._queries = {_normalized(text): evaluator for text, evaluator in (queries or {}).items()}
        self._documents: dict[tuple[Any, str], Document] = {}
        self.writes = 0

    @property
    def name(self) -> str:
        """The container's name."""
        return self._name

    @property
    def partition_key_path(self) -> str:
        """Where documents keep their partition key."""
        return self._partition_key_path

    def documents(self) -> Iterator[Document]:
        """Every stored document (copies)."""
        for document in self._documents.values():
            yield copy.deepcopy(document)

    async def read(self, document_id: str, *, partition_key: Any) -> Document:
        """Point read; DocumentNotFoundError when absent."""
        try:
            return copy.deepcopy(self._documents[(partition_key, document_id)])
        except KeyError:
            raise DocumentNotFoundError(self._name, document_id) from None

    async def create(self, document: Mapping[str, Any]) -> Document:
        """Create; DocumentExistsError when the id is taken in its partition."""
        key = self._key(document)
        if key in self._documents:
            raise DocumentExistsError(self._name, key[1])
        return self._store(key, document)

    async def upsert(self, document: Mapping[str, Any]) -> Document:
        """Create or overwrite unconditionally."""
        return self._store(self._key(document), document)

    async def replace(self, document: Mapping[str, Any], *, etag: str | None = None) -> Document:
        """Replace; with ``etag``, EtagMismatchError when the stored copy changed since."""
        key = self._key(document)
        self._check(key, etag)
        return self._store(key, document)

    async def patch(
        self,
        document_id: str,
        *,
        partition_key: Any,
        operations: list[PatchOperation],
        etag: str | None = None,
    ) -> Document:
        """Apply Cosmos patch operations (set, add, replace, remove, incr)."""
        check_patch_size(document_id, operations)
        key = (partition_key, document_id)
        self._check(key, etag)
        document = copy.deepcopy(self._documents[key])
        for operation in operations:
            _apply_patch(document, operation)
        return self._store(key, document)

    async def delete(self, document_id: str, *, partition_key: Any, etag: str | None = None) -> None:
        """Delete; DocumentNotFoundError when absent."""
        key = (partition_key, document_id)
        self._check(key, etag)
        del self._documents[key]

    async def read_many(self, ids: Sequence[str], *, partition_key: Any) -> dict[str, Document]:
        """The documents of one partition with these ids."""
        found = {}
        for document_id in ids:
            if (document := self._documents.get((partition_key, document_id))) is not None:
                found[document_id] = copy.deepcopy(document)
        return found

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[Document]:
        """All writes or none, as Azure applies a transactional batch."""
        staged = dict(self._documents)
        results: list[tuple[tuple[Any, str], Mapping[str, Any]]] = []
        for index, write in enumerate(writes):
            if write.kind == "patch":  # a patch names its document by id; the batch gives the partition
                key = (partition_key, str(write.document["id"]))
            else:
                key = self._key(write.document)
            if key[0] != partition_key:
                raise BatchWriteError(self._name, index=index, status=400)
            current = staged.get(key)
            status = _batch_conflict(write, current)
            if status is not None:
                raise BatchWriteError(self._name, index=index, status=status)
            document: Mapping[str, Any] = write.document
            if write.kind == "patch" and current is not None:
                patched = copy.deepcopy(current)  # its _etag and _ts are replaced when it is stored
                try:
                    for operation in write.operations:
                        _apply_patch(patched, operation)
                except StoreError:
                    raise BatchWriteError(self._name, index=index, status=400) from None
                document = patched
            staged[key] = dict(document)
            results.append((key, document))
        written = [self._store(key, document) for key, document in results]
        return written if return_documents else [{"_etag": document["_etag"]} for document in written]

    async def find(
        self, where: Mapping[str, Any], *, partition_key: Any = None, page_size: int = 500
    ) -> AsyncIterator[Document]:
        """Documents whose fields equal ``where``."""
        del page_size  # everything is in memory
        for (key, _), document in list(self._documents.items()):
            if partition_key is not None and key != partition_key:
                continue
            if all(document.get(field) == value for field, value in where.items()):
                yield copy.deepcopy(document)

    async def query(
        self,
        query: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        partition_key: Any = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AsyncIterator[QueryPage]:
        """A query this container has an evaluator for, page by page; UnsupportedQueryError otherwise."""
        evaluator = self._queries.get(_normalized(query))
        if evaluator is None:
            raise UnsupportedQueryError(self._name, query)
        arguments = {item["name"]: item["value"] for item in query_parameters(parameters)}
        scope = [
            copy.deepcopy(document)
            for (key, _), document in self._documents.items()
            if partition_key is None or key == partition_key
        ]
        rows = list(evaluator(scope, arguments))
        fingerprint = _fingerprint(query, arguments, partition_key)
        start = _resume_offset(continuation, fingerprint) if continuation is not None else 0
        for offset in range(start, len(rows), page_size):
            end = offset + page_size
            yield QueryPage(
                items=rows[offset:end], continuation=f"{end}:{fingerprint}" if end < len(rows) else None
            )

    def _key(self, document: Mapping[str, Any]) -> tuple[Any, str]:
        if not document.get("id"):
            raise StoreError(f"{self._name}: a document needs an id")
        return (partition_key_value(document, self._partition_key_path), str(document["id"]))

    def _check(self, key: tuple[Any, str], etag: str | None) -> None:
        current = self._documents.get(key)
        if current is None:
            raise DocumentNotFoundError(self._name, key[1])
        if etag is not None and current["_etag"] != etag:
            raise EtagMismatchError(self._name, key[1])

    def _store(self, key: tuple[Any, str], document: Mapping[str, Any]) -> Document:
        stored = copy.deepcopy(dict(document))
        stored["_etag"] = f'"{uuid.uuid4()}"'
        stored["_ts"] = int(time.time())
        self._documents[key] = stored
        self.writes += 1
        return copy.deepcopy(stored)


def _normalized(query: str) -> str:
    return " ".join(query.split())


def _fingerprint(query: str, arguments: Mapping[str, Any], partition_key: Any) -> str:
    # A continuation names the query it belongs to, so resuming another query with it is refused.
    identity = json.dumps([_normalized(query), arguments, partition_key], sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _resume_offset(continuation: str, fingerprint: str) -> int:
    offset, _, owner = continuation.partition(":")
    if owner != fingerprint or not offset.isdigit():
        raise StoreError(f"continuation {continuation!r} does not belong to this query")
    return int(offset)


def _batch_conflict(write: BatchWrite, current: Mapping[str, Any] | None) -> int | None:
    """The status a batch write fails with against the staged copy, or None when it applies."""
    if write.kind == "create":
        return 409 if current is not None else None
    if write.kind in {"replace", "patch"}:
        if current is None:
            return 404
        if write.etag is not None and current["_etag"] != write.etag:
            return 412
    return None


def _apply_patch(document: Document, operation: PatchOperation) -> None:
    op = operation["op"]
    *parents, leaf = operation["path"].strip("/").split("/")
    target: Any = document
    for part in parents:
        target = target.setdefault(part, {})
    if op in {"set", "add", "replace"}:
        if op == "replace" and leaf not in target:
            raise StoreError(f"patch replace: {operation['path']} does not exist")
        target[leaf] = copy.deepcopy(operation["value"])
    elif op == "remove":
        if leaf not in target:
            raise StoreError(f"patch remove: {operation['path']} does not exist")
        del target[leaf]
    elif op == "incr":
        target[leaf] = target.get(leaf, 0) + operation["value"]
    else:
        raise StoreError(f"unsupported patch operation {op!r}")
