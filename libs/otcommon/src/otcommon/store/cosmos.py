"""The store over the azure-cosmos async SDK: client factory, provisioning, containers."""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from azure.core import MatchConditions
from azure.core.pipeline.transport import AioHttpTransport
from azure.cosmos import PartitionKey
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import CosmosClient

from otcommon.store.errors import (
    BatchWriteError,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    StoreError,
    TopologyMismatchError,
)
from otcommon.store.interface import QueryPage, check_patch_size, query_parameters

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from azure.core.credentials_async import AsyncTokenCredential
    from azure.cosmos.aio import ContainerProxy, DatabaseProxy

    from otcommon.settings import CosmosConnection
    from otcommon.store.interface import BatchWrite, Document, PatchOperation
    from otcommon.store.topology import ContainerSpec, Topology

ProvisionResult = Literal["created", "updated", "unchanged"]
_CONTINUATION_HEADER = "x-ms-continuation"


def create_cosmos_client(
    connection: CosmosConnection,
    *,
    credential: AsyncTokenCredential | None = None,
    user_agent: str = "opentickets",
) -> CosmosClient:
    """A Cosmos client from settings: the account key if one is given, else Microsoft Entra ID.

    Without a key, ``credential`` (e.g. ``DefaultAzureCredential``) is required; the caller owns
    it and closes it. Plain-HTTP endpoints are local stand-ins, which advertise no regional
    endpoints, so endpoint discovery is turned off for them. Proxy and netrc settings are honoured
    only when the environment has some (``environment_configures_http``).
    """
    auth: Any
    if connection.key is not None:
        auth = connection.key.get_secret_value()
    elif credential is not None:
        auth = credential
    else:
        raise ValueError("no Cosmos DB key is configured: pass a credential (DefaultAzureCredential)")
    return CosmosClient(
        connection.endpoint,
        credential=auth,
        enable_endpoint_discovery=not connection.is_local_stand_in,
        user_agent=user_agent,
        transport=AioHttpTransport(use_env_settings=environment_configures_http()),
    )


def environment_configures_http() -> bool:
    """Whether proxy variables or a ``.netrc`` are set, which the Cosmos client must then honour.

    With them honoured (aiohttp's ``trust_env``), aiohttp looks both up again on every request, each
    in a worker thread: a quarter of a webhook acknowledgement's CPU when measured. Looked up once
    here instead, and trusted only when there is something to apply.
    """
    if urllib.request.getproxies() or os.environ.get("NETRC"):
        return True
    try:
        return (Path.home() / ".netrc").is_file()
    except (RuntimeError, OSError):
        return False  # no home directory: aiohttp would find no .netrc either


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What provisioning did to each container."""

    database: str
    containers: dict[str, ProvisionResult]


async def provision(client: CosmosClient, *, database: str, topology: Topology) -> ProvisionReport:
    """Create the database and every declared container; bring indexing policies up to date."""
    db = await client.create_database_if_not_exists(database)
    results: dict[str, ProvisionResult] = {}
    for spec in topology.containers:
        results[spec.name] = await _provision_container(db, spec)
    return ProvisionReport(database=database, containers=results)


async def _provision_container(db: DatabaseProxy, spec: ContainerSpec) -> ProvisionResult:
    container = db.get_container_client(spec.name)
    try:
        properties = await container.read()
    except cosmos_errors.CosmosResourceNotFoundError:
        options: dict[str, Any] = {"indexing_policy": spec.indexing_policy()}
        if (unique := spec.unique_key_policy()) is not None:
            options["unique_key_policy"] = unique
        if spec.default_ttl_seconds is not None:
            options["default_ttl"] = spec.default_ttl_seconds
        try:
            await db.create_container(
                spec.name, partition_key=PartitionKey(path=spec.partition_key), **options
            )
        except cosmos_errors.CosmosResourceExistsError:
            return "unchanged"  # another replica provisioned it first
        return "created"
    paths = properties.get("partitionKey", {}).get("paths", [])
    if paths != [spec.partition_key]:
        raise TopologyMismatchError(
            f"container {spec.name!r} is partitioned by {paths}, declared {spec.partition_key!r}; "
            "a partition key cannot change in place: migrate to a new container"
        )
    if (
        _same_indexing(properties.get("indexingPolicy", {}), spec)
        and properties.get("defaultTtl") == spec.default_ttl_seconds
    ):
        return "unchanged"
    await db.replace_container(
        spec.name,
        partition_key=PartitionKey(path=spec.partition_key),
        indexing_policy=spec.indexing_policy(),
        default_ttl=spec.default_ttl_seconds,
    )
    return "updated"


def _same_indexing(current: Mapping[str, Any], spec: ContainerSpec) -> bool:
    declared = spec.indexing_policy()

    def composites(policy: Mapping[str, Any]) -> list[list[tuple[str, str]]]:
        return [
            [(entry["path"], entry.get("order", "ascending")) for entry in index]
            for index in policy.get("compositeIndexes", [])
        ]

    def excluded(policy: Mapping[str, Any]) -> set[str]:
        return {entry["path"] for entry in policy.get("excludedPaths", [])}

    return composites(current) == composites(declared) and excluded(declared) <= excluded(current)


class CosmosContainer:
    """A :class:`~otcommon.store.interface.DocumentContainer` over one Cosmos DB container."""

    def __init__(self, container: ContainerProxy, *, partition_key_path: str) -> None:
        self._container = container
        self._partition_key_path = partition_key_path

    @classmethod
    def of(cls, client: CosmosClient, *, database: str, spec: ContainerSpec) -> CosmosContainer:
        """The declared container of a database (no I/O)."""
        proxy = client.get_database_client(database).get_container_client(spec.name)
        return cls(proxy, partition_key_path=spec.partition_key)

    @property
    def name(self) -> str:
        """The container's id."""
        return str(self._container.id)

    @property
    def partition_key_path(self) -> str:
        """Where documents keep their partition key."""
        return self._partition_key_path

    async def read(self, document_id: str, *, partition_key: Any) -> Document:
        """Point read; DocumentNotFoundError when absent."""
        try:
            return dict(await self._container.read_item(document_id, partition_key=partition_key))
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, document_id) from exc

    async def create(self, document: Mapping[str, Any]) -> Document:
        """Create; DocumentExistsError when the id is taken."""
        try:
            return dict(await self._container.create_item(dict(document)))
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, str(document.get("id"))) from exc

    async def upsert(self, document: Mapping[str, Any]) -> Document:
        """Create or overwrite unconditionally."""
        try:
            return dict(await self._container.upsert_item(dict(document)))
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, str(document.get("id"))) from exc

    async def replace(self, document: Mapping[str, Any], *, etag: str | None = None) -> Document:
        """Replace; with ``etag``, EtagMismatchError when the stored copy changed since."""
        document_id = str(document["id"])
        try:
            return dict(await self._container.replace_item(document_id, dict(document), **_if_match(etag)))
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, document_id) from exc

    async def patch(
        self,
        document_id: str,
        *,
        partition_key: Any,
        operations: list[PatchOperation],
        etag: str | None = None,
    ) -> Document:
        """Partial update with Cosmos patch operations; ETag-guarded when ``etag`` is given."""
        check_patch_size(document_id, operations)
        try:
            return dict(
                await self._container.patch_item(
                    document_id,
                    partition_key=partition_key,
                    patch_operations=operations,
                    **_if_match(etag),
                )
            )
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, document_id) from exc

    async def delete(self, document_id: str, *, partition_key: Any, etag: str | None = None) -> None:
        """Delete; DocumentNotFoundError when absent."""
        try:
            await self._container.delete_item(document_id, partition_key=partition_key, **_if_match(etag))
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, document_id) from exc

    async def read_many(self, ids: Sequence[str], *, partition_key: Any) -> dict[str, Document]:
        """One parameterized query per call, scoped to the partition."""
        if not ids:
            return {}
        rows = self._container.query_items(
            "SELECT * FROM c WHERE ARRAY_CONTAINS(@ids, c.id)",
            parameters=[{"name": "@ids", "value": list(ids)}],
            partition_key=partition_key,
        )
        try:
            return {row["id"]: dict(row) async for row in rows}
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, ",".join(ids[:3])) from exc

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[Document]:
        """A transactional batch (at most 100 writes, one partition)."""
        operations: list[Any] = []
        for write in writes:
            body = dict(write.document)
            if write.kind == "replace":
                operations.append(("replace", (str(body["id"]), body), _batch_if_match(write.etag)))
            elif write.kind == "patch":
                patch = (str(body["id"]), list(write.operations))
                operations.append(("patch", patch, _batch_if_match(write.etag)))
            else:
                operations.append((write.kind, (body,)))
        try:
            if return_documents:
                results = await self._container.execute_item_batch(operations, partition_key=partition_key)
            else:  # "Prefer: return=minimal": the results carry no resourceBody
                results = await self._container.execute_item_batch(
                    operations, partition_key=partition_key, no_response=True
                )
        except cosmos_errors.CosmosBatchOperationError as exc:
            index = exc.error_index or 0
            responses = exc.operation_responses or []
            status = responses[index].get("statusCode", exc.status_code) if index < len(responses) else 0
            raise BatchWriteError(self.name, index=index, status=int(status or 0)) from exc
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, "batch") from exc
        if not return_documents:
            # Each result still names the ETag the store gave its document.
            return [{"_etag": result["eTag"]} if result.get("eTag") else {} for result in results]
        return [dict(result.get("resourceBody") or {}) for result in results]

    async def find(
        self, where: Mapping[str, Any], *, partition_key: Any = None, page_size: int = 500
    ) -> AsyncIterator[Document]:
        """Equality filters on top-level fields, as one parameterized query."""
        clauses = []
        parameters: list[dict[str, Any]] = []
        for index, (field, value) in enumerate(where.items()):
            if not field.isidentifier():
                raise StoreError(f"find: {field!r} is not a plain field name")
            clauses.append(f"c.{field} = @p{index}")
            parameters.append({"name": f"@p{index}", "value": value})
        # Field names are checked identifiers and values are parameters: nothing is injected.
        query = "SELECT * FROM c" + (" WHERE " + " AND ".join(clauses) if clauses else "")  # noqa: S608
        options: dict[str, Any] = {"max_item_count": page_size}
        if partition_key is not None:
            options["partition_key"] = partition_key
        try:
            async for row in self._container.query_items(query, parameters=parameters, **options):
                yield dict(row)
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, "query") from exc

    async def query(
        self,
        query: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        partition_key: Any = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AsyncIterator[QueryPage]:
        """A parameterised query, page by page; see the interface for scope and continuation."""
        options: dict[str, Any] = {"max_item_count": page_size}
        if partition_key is not None:
            options["partition_key"] = partition_key
        paged = self._container.query_items(query, parameters=query_parameters(parameters), **options)
        try:
            async for page in paged.by_page(continuation):
                items = [dict(row) async for row in page]
                # The page iterator's own token comes from the client's last response, which a
                # concurrent request on the same client may have replaced; these headers are this query's.
                token = paged.get_response_headers().get(_CONTINUATION_HEADER) or None
                yield QueryPage(items=items, continuation=token)
        except cosmos_errors.CosmosHttpResponseError as exc:
            raise self._translate(exc, f"query {query!r}") from exc

    def _translate(self, exc: cosmos_errors.CosmosHttpResponseError, document_id: str) -> StoreError:
        # The one place that maps Cosmos status codes to the store's outcomes.
        status = exc.status_code
        if status == 404:  # noqa: PLR2004
            return DocumentNotFoundError(self.name, document_id)
        if status == 409:  # noqa: PLR2004
            return DocumentExistsError(self.name, document_id)
        if status == 412:  # noqa: PLR2004
            return EtagMismatchError(self.name, document_id)
        return StoreError(f"{self.name}/{document_id}: Cosmos DB answered {status}: {exc.reason}")


def _batch_if_match(etag: str | None) -> dict[str, Any]:
    return {} if etag is None else {"if_match_etag": etag}


def _if_match(etag: str | None) -> dict[str, Any]:
    if etag is None:
        return {}
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}
