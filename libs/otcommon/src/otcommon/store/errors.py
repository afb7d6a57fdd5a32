"""Typed store errors: callers handle outcomes, never SDK status codes."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed."""


class DocumentNotFoundError(StoreError):
    """The document (or its container) does not exist."""

    def __init__(self, container: str, document_id: str) -> None:
        self.container = container
        self.document_id = document_id
        super().__init__(f"{container}/{document_id} not found")


class ConflictError(StoreError):
    """A write lost a race: the document exists already, or changed since it was read."""

    def __init__(self, container: str, document_id: str, reason: str) -> None:
        self.container = container
        self.document_id = document_id
        super().__init__(f"{container}/{document_id}: {reason}")


class DocumentExistsError(ConflictError):
    """A create found a document with the same id (or unique key)."""

    def __init__(self, container: str, document_id: str) -> None:
        super().__init__(container, document_id, "already exists")


class EtagMismatchError(ConflictError):
    """A conditional write found the document changed since the ETag was read."""

    def __init__(self, container: str, document_id: str) -> None:
        super().__init__(container, document_id, "changed since it was read (ETag mismatch)")


class UnsupportedQueryError(StoreError):
    """The in-memory fake was given no evaluator for this query (it does not parse SQL)."""

    def __init__(self, container: str, query: str) -> None:
        self.container = container
        self.query = query
        super().__init__(
            f"{container}: the in-memory container does not model the query {query!r}; "
            "give it an evaluator (InMemoryContainer(queries={query: evaluator}))"
        )


class PatchTooLargeError(StoreError):
    """A patch has more operations than Cosmos DB accepts in one patch (10); write a replace instead."""

    def __init__(self, document_id: str, count: int, limit: int) -> None:
        super().__init__(
            f"patch of {document_id!r} has {count} operations; Cosmos DB accepts at most {limit} "
            "(replace the document under its ETag instead)"
        )


class TopologyMismatchError(StoreError):
    """An existing container cannot be brought to the declared shape (e.g. a different partition key)."""


class BatchWriteError(StoreError):
    """A batch failed at ``index`` with ``status`` (409 exists, 412 ETag mismatch, ...)."""

    def __init__(self, container: str, *, index: int, status: int) -> None:
        self.container = container
        self.index = index
        self.status = status
        super().__init__(f"{container}: batch operation {index} failed with status {status}")
