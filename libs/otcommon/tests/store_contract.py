"""Behaviour every DocumentContainer must have; run against the fake and against Cosmos DB."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from otcommon.store import (
    CONTENT_HASH_FIELD,
    BatchWrite,
    BatchWriteError,
    CoalescingContainer,
    DocumentContainer,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    Patch,
    PatchTooLargeError,
    StoreError,
    read_modify_write,
    upsert_if_changed,
)


def new_id() -> str:
    return uuid.uuid4().hex


BY_MARKER = "SELECT * FROM c WHERE c.marker = @marker"
BY_MARKER_IN_ORDER = "SELECT * FROM c WHERE c.marker = @marker ORDER BY c.n"
BY_MARKER_AT_LEAST = "SELECT c.id, c.n FROM c WHERE c.marker = @marker AND c.n >= @least ORDER BY c.n"
TOTALS = "SELECT COUNT(1) AS orders, SUM(c.n) AS total FROM c"

CONTRACT_QUERIES = {
    BY_MARKER: lambda docs, args: [doc for doc in docs if doc.get("marker") == args["@marker"]],
    BY_MARKER_IN_ORDER: lambda docs, args: sorted(
        (doc for doc in docs if doc.get("marker") == args["@marker"]), key=lambda doc: doc["n"]
    ),
    BY_MARKER_AT_LEAST: lambda docs, args: [
        {"id": doc["id"], "n": doc["n"]}
        for doc in sorted(docs, key=lambda doc: doc["n"])
        if doc.get("marker") == args["@marker"] and doc["n"] >= args["@least"]
    ],
    TOTALS: lambda docs, _: [{"orders": len(docs), "total": sum(doc["n"] for doc in docs)}],
}
"""The queries the contract runs, with the evaluators the in-memory fake answers them by."""


async def _pages(container: DocumentContainer, query: str, **options) -> list[list[dict]]:
    return [page.items async for page in container.query(query, **options)]


async def _seed(container: DocumentContainer, marker: str, partitions: dict[str, int]) -> None:
    for partition, count in partitions.items():
        for n in range(count):
            await container.create({"id": new_id(), "eventId": partition, "marker": marker, "n": n})


class EtaglessBatches:
    """A container whose batches, asked for no documents back, do not name the written ETags."""

    def __init__(self, container: DocumentContainer) -> None:
        self._container = container
        self.name = container.name
        self.partition_key_path = container.partition_key_path

    async def read(self, document_id, *, partition_key):
        return await self._container.read(document_id, partition_key=partition_key)

    async def write_batch(self, writes, *, partition_key, return_documents=True):
        written = await self._container.write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )
        return written if return_documents else [{} for _ in written]


class RecordingWrites:
    """The container a CoalescingContainer wraps, recording how its reads and replaces reached the store."""

    def __init__(self, container: DocumentContainer) -> None:
        self._container = container
        self.name = container.name
        self.partition_key_path = container.partition_key_path
        self.batches: list[tuple[str, list[str]]] = []
        self.batches_returning: list[bool] = []  # whether each batch asked for its written documents
        self.single_replaces: list[str] = []
        self.single_upserts: list[str] = []
        self.single_creates: list[str] = []
        self.read_manys: list[tuple[str, list[str]]] = []
        self.single_reads: list[str] = []

    async def read(self, document_id, *, partition_key):
        self.single_reads.append(document_id)
        return await self._container.read(document_id, partition_key=partition_key)

    async def read_many(self, ids, *, partition_key):
        self.read_manys.append((partition_key, list(ids)))
        return await self._container.read_many(ids, partition_key=partition_key)

    async def write_batch(self, writes, *, partition_key, return_documents=True):
        self.batches.append((partition_key, [write.document["id"] for write in writes]))
        self.batches_returning.append(return_documents)
        return await self._container.write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )

    async def replace(self, document, *, etag=None):
        self.single_replaces.append(document["id"])
        return await self._container.replace(document, etag=etag)

    async def upsert(self, document):
        self.single_upserts.append(document["id"])
        return await self._container.upsert(document)

    async def create(self, document):
        self.single_creates.append(document["id"])
        return await self._container.create(document)


class StoreContract:
    """Subclasses provide a ``container`` fixture partitioned by ``/eventId``."""

    async def test_create_then_read_returns_document_with_etag(self, container: DocumentContainer):
        doc_id = new_id()
        created = await container.create({"id": doc_id, "eventId": "ev1", "TotalAmount": 12.5})
        read = await container.read(doc_id, partition_key="ev1")
        assert read["TotalAmount"] == 12.5
        assert read["_etag"] == created["_etag"]

    async def test_missing_document_raises_not_found(self, container: DocumentContainer):
        with pytest.raises(DocumentNotFoundError):
            await container.read(new_id(), partition_key="ev1")

    async def test_document_is_scoped_to_its_partition(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1"})
        with pytest.raises(DocumentNotFoundError):
            await container.read(doc_id, partition_key="ev2")

    async def test_create_of_existing_id_raises_exists(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1"})
        with pytest.raises(DocumentExistsError):
            await container.create({"id": doc_id, "eventId": "ev1"})

    async def test_replace_with_stale_etag_raises_mismatch(self, container: DocumentContainer):
        doc_id = new_id()
        first = await container.create({"id": doc_id, "eventId": "ev1", "n": 1})
        await container.replace({"id": doc_id, "eventId": "ev1", "n": 2}, etag=first["_etag"])
        with pytest.raises(EtagMismatchError):
            await container.replace({"id": doc_id, "eventId": "ev1", "n": 3}, etag=first["_etag"])
        assert (await container.read(doc_id, partition_key="ev1"))["n"] == 2

    async def test_patch_sets_and_increments_fields(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1", "scans": 1, "state": "pending"})
        patched = await container.patch(
            doc_id,
            partition_key="ev1",
            operations=[
                {"op": "set", "path": "/state", "value": "queued"},
                {"op": "incr", "path": "/scans", "value": 2},
            ],
        )
        assert (patched["state"], patched["scans"]) == ("queued", 3)
        assert (await container.read(doc_id, partition_key="ev1"))["state"] == "queued"

    async def test_patch_with_stale_etag_raises_mismatch(self, container: DocumentContainer):
        doc_id = new_id()
        first = await container.create({"id": doc_id, "eventId": "ev1", "state": "pending"})
        await container.upsert({"id": doc_id, "eventId": "ev1", "state": "queued"})
        with pytest.raises(EtagMismatchError):
            await container.patch(
                doc_id,
                partition_key="ev1",
                operations=[{"op": "set", "path": "/state", "value": "pending"}],
                etag=first["_etag"],
            )

    async def test_a_patch_of_more_than_ten_operations_is_refused_and_changes_nothing(
        self, container: DocumentContainer
    ):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1"})
        eleven = [{"op": "set", "path": f"/f{n}", "value": n} for n in range(11)]
        with pytest.raises(PatchTooLargeError, match="at most 10"):
            await container.patch(doc_id, partition_key="ev1", operations=eleven)
        with pytest.raises(PatchTooLargeError):
            await container.write_batch([BatchWrite.patch(doc_id, eleven)], partition_key="ev1")
        assert "f0" not in await container.read(doc_id, partition_key="ev1")
        ten = eleven[:10]
        assert (await container.patch(doc_id, partition_key="ev1", operations=ten))["f9"] == 9

    async def test_patch_of_missing_document_raises_not_found(self, container: DocumentContainer):
        with pytest.raises(DocumentNotFoundError):
            await container.patch(
                new_id(), partition_key="ev1", operations=[{"op": "set", "path": "/a", "value": 1}]
            )

    async def test_delete_removes_document(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1"})
        await container.delete(doc_id, partition_key="ev1")
        with pytest.raises(DocumentNotFoundError):
            await container.read(doc_id, partition_key="ev1")

    async def test_upsert_if_changed_skips_unchanged_content(self, container: DocumentContainer):
        doc = {"id": new_id(), "eventId": "ev1", "TotalAmount": 10.0, "Name": "A"}
        first = await upsert_if_changed(container, doc)
        second = await upsert_if_changed(container, dict(doc))
        changed = await upsert_if_changed(container, {**doc, "TotalAmount": 11.0})
        assert [first.result, second.result, changed.result] == ["created", "unchanged", "updated"]
        assert second.document["_etag"] == first.document["_etag"]
        stored = await container.read(doc["id"], partition_key="ev1")
        assert stored["TotalAmount"] == 11.0
        assert stored[CONTENT_HASH_FIELD] == changed.document[CONTENT_HASH_FIELD]

    async def test_read_modify_write_retries_after_a_concurrent_change(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1", "count": 0})
        interfered = False

        async def add_one(doc: dict) -> dict:
            nonlocal interfered
            if not interfered:
                # Another writer changes the document between this read and the guarded replace.
                interfered = True
                await container.upsert({"id": doc_id, "eventId": "ev1", "count": 10})
            return {**doc, "count": doc["count"] + 1}

        outcome = await read_modify_write(container, doc_id, partition_key="ev1", mutate=add_one)
        assert (outcome.result, outcome.document["count"]) == ("updated", 11)

    async def test_read_modify_write_from_a_stale_copy_decides_again_on_the_stored_one(
        self, container: DocumentContainer
    ):
        doc_id = new_id()
        stale = await container.create({"id": doc_id, "eventId": "ev1", "count": 0})
        # Another writer changed it after the copy was taken (say, by a query).
        await container.upsert({"id": doc_id, "eventId": "ev1", "count": 10})
        outcome = await read_modify_write(
            container,
            doc_id,
            partition_key="ev1",
            mutate=lambda doc: {**doc, "count": doc["count"] + 1},
            current=stale,
        )
        assert (outcome.result, outcome.document["count"]) == ("updated", 11)

    async def test_read_modify_write_from_a_copy_of_a_deleted_document_creates_it(
        self, container: DocumentContainer
    ):
        doc_id = new_id()
        gone = await container.create({"id": doc_id, "eventId": "ev1", "count": 5})
        await container.delete(doc_id, partition_key="ev1")
        outcome = await read_modify_write(
            container,
            doc_id,
            partition_key="ev1",
            mutate=lambda doc: {**doc, "count": doc["count"] + 1},
            create=lambda: {"id": doc_id, "eventId": "ev1", "count": 0},
            current=gone,
        )
        assert (outcome.result, outcome.document["count"]) == ("created", 0)

    async def test_read_modify_write_from_a_current_copy_writes_under_its_etag(
        self, container: DocumentContainer
    ):
        doc_id = new_id()
        held = await container.create({"id": doc_id, "eventId": "ev1", "count": 1})
        outcome = await read_modify_write(
            container,
            doc_id,
            partition_key="ev1",
            mutate=lambda doc: {**doc, "count": doc["count"] + 1},
            current=held,
        )
        stored = await container.read(doc_id, partition_key="ev1")
        assert (outcome.result, stored["count"], stored["_etag"]) == ("updated", 2, outcome.document["_etag"])

    async def test_concurrent_read_modify_writes_lose_no_update(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1", "count": 0})

        def add_one(doc: dict) -> dict:
            return {**doc, "count": doc["count"] + 1}

        await asyncio.gather(
            *(
                read_modify_write(container, doc_id, partition_key="ev1", mutate=add_one, attempts=50)
                for _ in range(8)
            )
        )
        assert (await container.read(doc_id, partition_key="ev1"))["count"] == 8

    async def test_read_many_returns_present_documents_of_the_partition(self, container: DocumentContainer):
        ids = [new_id() for _ in range(3)]
        for doc_id in ids[:2]:
            await container.create({"id": doc_id, "eventId": "ev-many"})
        other = new_id()
        await container.create({"id": other, "eventId": "ev-other"})
        found = await container.read_many([*ids, other], partition_key="ev-many")
        assert set(found) == set(ids[:2])
        assert all("_etag" in document for document in found.values())
        assert await container.read_many([], partition_key="ev-many") == {}

    async def test_write_batch_creates_upserts_and_replaces(self, container: DocumentContainer):
        a, b, c = new_id(), new_id(), new_id()
        existing = await container.create({"id": c, "eventId": "ev-batch", "n": 0})
        written = await container.write_batch(
            [
                BatchWrite("create", {"id": a, "eventId": "ev-batch", "n": 1}),
                BatchWrite("upsert", {"id": b, "eventId": "ev-batch", "n": 2}),
                BatchWrite("replace", {"id": c, "eventId": "ev-batch", "n": 3}, etag=existing["_etag"]),
            ],
            partition_key="ev-batch",
        )
        assert [document["n"] for document in written] == [1, 2, 3]
        stored = await container.read_many([a, b, c], partition_key="ev-batch")
        assert {doc_id: doc["n"] for doc_id, doc in stored.items()} == {a: 1, b: 2, c: 3}

    async def test_write_batch_reports_the_failing_operation(self, container: DocumentContainer):
        taken, stale = new_id(), new_id()
        await container.create({"id": taken, "eventId": "ev-batch", "n": 0})
        first = await container.create({"id": stale, "eventId": "ev-batch", "n": 0})
        await container.upsert({"id": stale, "eventId": "ev-batch", "n": 1})
        with pytest.raises(BatchWriteError) as exists:
            await container.write_batch(
                [BatchWrite("create", {"id": taken, "eventId": "ev-batch", "n": 9})], partition_key="ev-batch"
            )
        assert (exists.value.index, exists.value.status) == (0, 409)
        with pytest.raises(BatchWriteError) as mismatch:
            await container.write_batch(
                [
                    BatchWrite("upsert", {"id": new_id(), "eventId": "ev-batch"}),
                    BatchWrite("replace", {"id": stale, "eventId": "ev-batch", "n": 9}, etag=first["_etag"]),
                ],
                partition_key="ev-batch",
            )
        assert (mismatch.value.index, mismatch.value.status) == (1, 412)
        assert (await container.read(stale, partition_key="ev-batch"))["n"] == 1
        assert (await container.read(taken, partition_key="ev-batch"))["n"] == 0

    async def test_write_batch_patches_send_only_their_operations(self, container: DocumentContainer):
        a, b = new_id(), new_id()
        first = await container.create({"id": a, "eventId": "ev-patch", "n": 1, "state": "pending"})
        await container.create({"id": b, "eventId": "ev-patch", "n": 2, "state": "pending"})
        set_queued = [{"op": "set", "path": "/state", "value": "queued"}]
        written = await container.write_batch(
            [
                BatchWrite.patch(a, set_queued, etag=first["_etag"]),
                BatchWrite.patch(b, [*set_queued, {"op": "incr", "path": "/n", "value": 5}]),
            ],
            partition_key="ev-patch",
        )
        assert [(doc["id"], doc["n"], doc["state"]) for doc in written] == [
            (a, 1, "queued"),
            (b, 7, "queued"),
        ]
        assert written[0]["_etag"] != first["_etag"]
        stored = await container.read(b, partition_key="ev-patch")
        assert (stored["n"], stored["state"], stored["_etag"]) == (7, "queued", written[1]["_etag"])

    async def test_write_batch_patch_fails_on_a_stale_etag_or_a_missing_document(
        self, container: DocumentContainer
    ):
        doc_id = new_id()
        first = await container.create({"id": doc_id, "eventId": "ev-patch", "state": "pending"})
        await container.upsert({"id": doc_id, "eventId": "ev-patch", "state": "enriched"})
        set_queued = [{"op": "set", "path": "/state", "value": "queued"}]
        with pytest.raises(BatchWriteError) as stale:
            await container.write_batch(
                [BatchWrite.patch(doc_id, set_queued, etag=first["_etag"])], partition_key="ev-patch"
            )
        assert (stale.value.index, stale.value.status) == (0, 412)
        assert (await container.read(doc_id, partition_key="ev-patch"))["state"] == "enriched"
        with pytest.raises(BatchWriteError) as missing:
            await container.write_batch([BatchWrite.patch(new_id(), set_queued)], partition_key="ev-patch")
        assert (missing.value.index, missing.value.status) == (0, 404)

    async def test_find_filters_on_field_equality(self, container: DocumentContainer):
        marker = new_id()
        await container.create({"id": new_id(), "eventId": "ev1", "marker": marker, "state": "pending"})
        await container.create({"id": new_id(), "eventId": "ev2", "marker": marker, "state": "pending"})
        await container.create({"id": new_id(), "eventId": "ev2", "marker": marker, "state": "queued"})
        everywhere = [doc async for doc in container.find({"marker": marker, "state": "pending"})]
        one_partition = [doc async for doc in container.find({"marker": marker}, partition_key="ev2")]
        assert sorted(doc["eventId"] for doc in everywhere) == ["ev1", "ev2"]
        assert sorted(doc["state"] for doc in one_partition) == ["pending", "queued"]

    async def test_query_scoped_to_a_partition_reads_only_that_partition(self, container: DocumentContainer):
        marker, one, other = new_id(), new_id(), new_id()
        await _seed(container, marker, {one: 3, other: 2})
        pages = await _pages(container, BY_MARKER, parameters={"@marker": marker}, partition_key=one)
        assert sorted((doc["eventId"], doc["n"]) for page in pages for doc in page) == [
            (one, 0),
            (one, 1),
            (one, 2),
        ]

    async def test_query_across_partitions_reads_every_partition(self, container: DocumentContainer):
        marker, one, other = new_id(), new_id(), new_id()
        await _seed(container, marker, {one: 3, other: 2})
        pages = await _pages(container, BY_MARKER, parameters={"@marker": marker})
        assert sorted((doc["eventId"], doc["n"]) for page in pages for doc in page) == sorted(
            [(one, 0), (one, 1), (one, 2), (other, 0), (other, 1)]
        )

    async def test_query_binds_every_parameter(self, container: DocumentContainer):
        marker, partition = new_id(), new_id()
        await _seed(container, marker, {partition: 5})
        pages = await _pages(
            container,
            BY_MARKER_AT_LEAST,
            parameters={"@marker": marker, "@least": 3},
            partition_key=partition,
        )
        assert [(row["n"], set(row)) for page in pages for row in page] == [
            (3, {"id", "n"}),
            (4, {"id", "n"}),
        ]

    async def test_query_pages_resume_exactly_after_their_continuation(self, container: DocumentContainer):
        marker, partition = new_id(), new_id()
        await _seed(container, marker, {partition: 7})
        options = {"parameters": {"@marker": marker}, "partition_key": partition, "page_size": 3}
        pages = [page async for page in container.query(BY_MARKER_IN_ORDER, **options)]
        assert [[doc["n"] for doc in page.items] for page in pages] == [[0, 1, 2], [3, 4, 5], [6]]
        assert pages[-1].continuation is None
        for index, page in enumerate(pages[:-1]):
            assert page.continuation is not None
            resumed = await _pages(container, BY_MARKER_IN_ORDER, continuation=page.continuation, **options)
            assert resumed == [later.items for later in pages[index + 1 :]]

    async def test_query_across_partitions_resumes_without_loss_or_repeat(self, container: DocumentContainer):
        marker = new_id()
        await _seed(container, marker, {new_id(): 4, new_id(): 3})
        options = {"parameters": {"@marker": marker}, "page_size": 2}
        first = await anext(container.query(BY_MARKER, **options))
        assert len(first.items) == 2
        assert first.continuation is not None
        rest = await _pages(container, BY_MARKER, continuation=first.continuation, **options)
        ids = [doc["id"] for doc in first.items] + [doc["id"] for page in rest for doc in page]
        assert len(ids) == len(set(ids)) == 7

    async def test_query_with_no_match_yields_no_page(self, container: DocumentContainer):
        assert await _pages(container, BY_MARKER, parameters={"@marker": new_id()}) == []
        assert (
            await _pages(container, BY_MARKER, parameters={"@marker": new_id()}, partition_key=new_id()) == []
        )

    async def test_query_aggregates_one_partition(self, container: DocumentContainer):
        partition = new_id()
        await _seed(container, new_id(), {partition: 4, new_id(): 2})
        pages = await _pages(container, TOTALS, partition_key=partition)
        assert [(row["orders"], row["total"]) for page in pages for row in page] == [(4, 6)]

    async def test_query_refuses_a_parameter_without_at_sign(self, container: DocumentContainer):
        with pytest.raises(StoreError, match="marker"):
            await _pages(container, BY_MARKER, parameters={"marker": "x"})

    async def test_read_modify_write_creates_a_missing_document(self, container: DocumentContainer):
        doc_id = new_id()
        outcome = await read_modify_write(
            container,
            doc_id,
            partition_key="ev1",
            mutate=lambda doc: {**doc, "n": doc["n"] + 1},
            create=lambda: {"id": doc_id, "eventId": "ev1", "n": 0},
        )
        again = await read_modify_write(
            container, doc_id, partition_key="ev1", mutate=lambda doc: {**doc, "n": doc["n"] + 1}
        )
        assert (outcome.result, outcome.document["n"]) == ("created", 0)
        assert (again.result, again.document["n"]) == ("updated", 1)

    async def test_read_modify_write_without_create_raises_not_found(self, container: DocumentContainer):
        with pytest.raises(DocumentNotFoundError):
            await read_modify_write(container, new_id(), partition_key="ev1", mutate=lambda doc: doc)

    async def test_read_modify_write_leaves_a_document_it_need_not_change(self, container: DocumentContainer):
        doc_id = new_id()
        created = await container.create({"id": doc_id, "eventId": "ev1", "n": 5})
        outcome = await read_modify_write(container, doc_id, partition_key="ev1", mutate=lambda _: None)
        assert outcome.result == "unchanged"
        assert (await container.read(doc_id, partition_key="ev1"))["_etag"] == created["_etag"]

    async def test_read_modify_write_patches_with_an_etag_guard(self, container: DocumentContainer):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1", "state": "pending", "n": 1})
        interfered = False

        async def queue_and_double(doc: dict) -> Patch:
            nonlocal interfered
            if not interfered:
                interfered = True
                await container.upsert({**doc, "n": 5})  # a concurrent writer: the patch must see it
            return Patch(
                [
                    {"op": "set", "path": "/state", "value": "queued"},
                    {"op": "set", "path": "/n", "value": doc["n"] * 2},
                ]
            )

        outcome = await read_modify_write(container, doc_id, partition_key="ev1", mutate=queue_and_double)
        stored = await container.read(doc_id, partition_key="ev1")
        assert (outcome.result, stored["state"], stored["n"]) == ("updated", "queued", 10)
        assert outcome.document["_etag"] == stored["_etag"]

    async def test_read_modify_write_with_one_attempt_is_a_compare_and_swap(
        self, container: DocumentContainer
    ):
        doc_id = new_id()
        await container.create({"id": doc_id, "eventId": "ev1", "holder": "a"})

        rivals = ["rival"]

        async def take_after_a_rival(doc: dict) -> dict:
            if rivals:  # one rival, once: a second attempt would win
                await container.upsert({**doc, "holder": rivals.pop()})
            return {**doc, "holder": "b"}

        with pytest.raises(EtagMismatchError):
            await read_modify_write(
                container, doc_id, partition_key="ev1", mutate=take_after_a_rival, attempts=1
            )
        assert (await container.read(doc_id, partition_key="ev1"))["holder"] == "rival"

    async def test_read_modify_write_create_race_decides_again(self, container: DocumentContainer):
        doc_id = new_id()

        async def create_after_a_rival() -> dict:
            await container.create({"id": doc_id, "eventId": "ev1", "n": 10})  # the rival wins the create
            return {"id": doc_id, "eventId": "ev1", "n": 0}

        outcome = await read_modify_write(
            container,
            doc_id,
            partition_key="ev1",
            mutate=lambda doc: {**doc, "n": doc["n"] + 1},
            create=create_after_a_rival,
        )
        assert (outcome.result, outcome.document["n"]) == ("updated", 11)

    async def test_coalesced_replaces_go_in_one_batch_per_partition(self, container: DocumentContainer):
        a1, a2, a3, b1 = new_id(), new_id(), new_id(), new_id()
        held = {
            doc_id: await container.create({"id": doc_id, "eventId": event, "n": 0})
            for doc_id, event in ((a1, "ev-coalesce-a"), (a2, "ev-coalesce-a"), (a3, "ev-coalesce-a"))
        }
        held[b1] = await container.create({"id": b1, "eventId": "ev-coalesce-b", "n": 0})
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder, max_batch=2)  # type: ignore[arg-type]

        written = await asyncio.gather(
            *(coalescing.replace({**doc, "n": 1}, etag=doc["_etag"]) for doc in held.values())
        )

        assert [doc["n"] for doc in written] == [1, 1, 1, 1]
        assert all(doc["_etag"] != held[doc["id"]]["_etag"] for doc in written)
        assert sorted((key, len(ids)) for key, ids in recorder.batches) == [("ev-coalesce-a", 2)]
        assert sorted(recorder.single_replaces) == sorted(
            [a3, b1]
        )  # the rest of ev-coalesce-a; ev-coalesce-b
        for doc in written:
            stored = await container.read(doc["id"], partition_key=doc["eventId"])
            assert (stored["n"], stored["_etag"]) == (1, doc["_etag"])

    async def test_coalesced_replace_with_a_stale_etag_fails_alone(self, container: DocumentContainer):
        fresh, stale, gone = new_id(), new_id(), new_id()
        first = {
            doc_id: await container.create({"id": doc_id, "eventId": "ev-coalesce", "n": 0})
            for doc_id in (fresh, stale, gone)
        }
        await container.upsert({"id": stale, "eventId": "ev-coalesce", "n": 5})  # changed since it was read
        await container.delete(gone, partition_key="ev-coalesce")
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder)  # type: ignore[arg-type]

        outcomes = await asyncio.gather(
            *(coalescing.replace({**doc, "n": 1}, etag=doc["_etag"]) for doc in first.values()),
            return_exceptions=True,
        )

        assert len(recorder.batches) == 1  # tried together; the batch failed as a whole
        assert outcomes[0]["n"] == 1
        assert isinstance(outcomes[1], EtagMismatchError)
        assert isinstance(outcomes[2], DocumentNotFoundError)
        assert (await container.read(fresh, partition_key="ev-coalesce"))["n"] == 1
        assert (await container.read(stale, partition_key="ev-coalesce"))["n"] == 5

    async def test_read_modify_write_through_coalesced_replaces_decides_again_on_a_lost_race(
        self, container: DocumentContainer
    ):
        ids = [new_id() for _ in range(3)]
        held = [await container.create({"id": doc_id, "eventId": "ev-coalesce", "n": 0}) for doc_id in ids]
        await container.upsert({"id": ids[1], "eventId": "ev-coalesce", "n": 10})  # a rival wrote meanwhile
        coalescing = CoalescingContainer(container)

        outcomes = await asyncio.gather(
            *(
                read_modify_write(
                    coalescing,
                    doc["id"],
                    partition_key="ev-coalesce",
                    mutate=lambda current: {**current, "n": current["n"] + 1},
                    current=doc,
                )
                for doc in held
            )
        )

        assert [(outcome.result, outcome.document["n"]) for outcome in outcomes] == [
            ("updated", 1),
            ("updated", 11),
            ("updated", 1),
        ]

    async def test_replaces_asked_while_a_round_lingers_go_in_its_batch(self, container: DocumentContainer):
        async def asked_a_moment_apart(coalescing: CoalescingContainer) -> None:
            first, second = [
                await container.create({"id": new_id(), "eventId": "ev-linger", "n": 0}) for _ in range(2)
            ]
            replacing = asyncio.ensure_future(coalescing.replace({**first, "n": 1}, etag=first["_etag"]))
            for _ in range(3):  # the first replace's round has started
                await asyncio.sleep(0)
            written = await coalescing.replace({**second, "n": 1}, etag=second["_etag"])
            assert ((await replacing)["n"], written["n"]) == (1, 1)

        at_once = RecordingWrites(container)
        await asked_a_moment_apart(CoalescingContainer(at_once))  # type: ignore[arg-type]
        lingering = RecordingWrites(container)
        await asked_a_moment_apart(CoalescingContainer(lingering, linger_seconds=0.2))  # type: ignore[arg-type]

        assert (len(at_once.single_replaces), at_once.batches) == (2, [])
        assert ([key for key, _ in lingering.batches], lingering.single_replaces) == (["ev-linger"], [])
        assert len(lingering.batches[0][1]) == 2

    async def test_batched_upserts_go_in_one_batch_per_partition(self, container: DocumentContainer):
        a1, a2, b1, existing = new_id(), new_id(), new_id(), new_id()
        await container.create({"id": existing, "eventId": "ev-upsert-a", "n": 0})
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder, batch_upserts=True)  # type: ignore[arg-type]

        written = await asyncio.gather(
            coalescing.upsert({"id": a1, "eventId": "ev-upsert-a", "n": 1}),
            coalescing.upsert({"id": a2, "eventId": "ev-upsert-a", "n": 2}),
            coalescing.upsert({"id": existing, "eventId": "ev-upsert-a", "n": 3}),
            coalescing.upsert({"id": b1, "eventId": "ev-upsert-b", "n": 4}),
        )

        assert [doc["n"] for doc in written] == [1, 2, 3, 4]
        assert recorder.batches == [("ev-upsert-a", [a1, a2, existing])]
        assert recorder.single_upserts == [b1]  # alone in its partition
        for doc in written:
            stored = await container.read(doc["id"], partition_key=doc["eventId"])
            assert (stored["n"], stored["_etag"]) == (doc["n"], doc["_etag"])

    async def test_batched_creates_go_together_and_an_existing_id_fails_alone(
        self, container: DocumentContainer
    ):
        a1, a2, existing = new_id(), new_id(), new_id()
        await container.create({"id": existing, "eventId": "ev-create", "n": 0})
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder, batch_creates=True)  # type: ignore[arg-type]

        created = await asyncio.gather(
            coalescing.create({"id": a1, "eventId": "ev-create", "n": 1}),
            coalescing.create({"id": a2, "eventId": "ev-create", "n": 2}),
        )
        assert [doc["n"] for doc in created] == [1, 2]
        assert recorder.batches == [("ev-create", [a1, a2])]
        assert recorder.single_creates == []

        b1 = new_id()
        outcomes = await asyncio.gather(
            coalescing.create({"id": b1, "eventId": "ev-create", "n": 3}),
            coalescing.create({"id": existing, "eventId": "ev-create", "n": 4}),
            return_exceptions=True,
        )
        assert outcomes[0]["n"] == 3  # type: ignore[index]
        assert isinstance(outcomes[1], DocumentExistsError)
        # The failed batch applied nothing; each create was sent again on its own.
        assert recorder.batches[-1] == ("ev-create", [b1, existing])
        assert sorted(recorder.single_creates) == sorted([b1, existing])
        assert (await container.read(existing, partition_key="ev-create"))["n"] == 0
        assert (await container.read(b1, partition_key="ev-create"))["n"] == 3

    async def test_upsert_many_goes_in_the_same_batches(self, container: DocumentContainer):
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder, batch_upserts=True)  # type: ignore[arg-type]
        documents = [{"id": new_id(), "eventId": "ev-upsert-many", "n": n} for n in range(3)]

        _, alone = await asyncio.gather(
            coalescing.upsert_many(documents),
            coalescing.upsert({"id": new_id(), "eventId": "ev-upsert-many", "n": 3}),
        )

        assert alone["n"] == 3
        assert [(key, len(ids)) for key, ids in recorder.batches] == [("ev-upsert-many", 4)]
        assert recorder.batches_returning == [False]  # no documents back: the lone upsert gets its own
        assert recorder.single_upserts == []
        for doc in [*documents, alone]:
            stored = await container.read(doc["id"], partition_key="ev-upsert-many")
            assert stored["n"] == doc["n"]
        stored = await container.read(alone["id"], partition_key="ev-upsert-many")
        assert stored["_etag"] == alone["_etag"]

        more = [{"id": new_id(), "eventId": "ev-upsert-many", "n": n} for n in (4, 5)]
        await coalescing.upsert_many(more)
        assert recorder.batches_returning == [False, False]
        for doc in more:
            assert (await container.read(doc["id"], partition_key="ev-upsert-many"))["n"] == doc["n"]

    async def test_a_batch_asked_for_no_documents_writes_them_and_returns_their_etags_alone(
        self, container: DocumentContainer
    ):
        documents = [{"id": new_id(), "eventId": "ev-minimal", "n": n} for n in range(3)]
        returned = await container.write_batch(
            [BatchWrite("upsert", doc) for doc in documents],
            partition_key="ev-minimal",
            return_documents=False,
        )
        assert [set(result) for result in returned] == [{"_etag"}] * 3
        for doc, result in zip(documents, returned, strict=True):
            stored = await container.read(doc["id"], partition_key="ev-minimal")
            assert (stored["n"], stored["_etag"]) == (doc["n"], result["_etag"])

    async def test_a_batched_write_answers_the_document_sent_with_its_new_etag(
        self, container: DocumentContainer
    ):
        first, second = new_id(), new_id()
        for doc_id in (first, second):
            await container.create({"id": doc_id, "eventId": "ev-echo", "n": 0})
        coalescing = CoalescingContainer(container)
        current = [await container.read(doc_id, partition_key="ev-echo") for doc_id in (first, second)]

        written = await asyncio.gather(
            *(coalescing.replace({**doc, "n": 1}, etag=doc["_etag"]) for doc in current)
        )

        for doc in written:
            stored = await container.read(doc["id"], partition_key="ev-echo")
            assert doc == {"id": doc["id"], "eventId": "ev-echo", "n": 1, "_etag": stored["_etag"]}
        # The answer's ETag guards the next write, as a read's would.
        await container.replace({**written[0], "n": 2}, etag=written[0]["_etag"])
        with pytest.raises(EtagMismatchError):
            await container.replace({**written[0], "n": 3}, etag=written[0]["_etag"])

    async def test_a_batched_write_whose_etag_the_store_did_not_name_is_read_back(
        self, container: DocumentContainer
    ):
        doc_ids = [new_id(), new_id()]
        coalescing = CoalescingContainer(EtaglessBatches(container), batch_creates=True)  # type: ignore[arg-type]

        created = await asyncio.gather(
            *(coalescing.create({"id": doc_id, "eventId": "ev-etagless", "n": 1}) for doc_id in doc_ids)
        )

        for doc in created:
            stored = await container.read(doc["id"], partition_key="ev-etagless")
            assert doc["_etag"] == stored["_etag"]

    async def test_upserts_go_straight_through_unless_batched(self, container: DocumentContainer):
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder)  # type: ignore[arg-type]
        ids = [new_id(), new_id()]

        await asyncio.gather(*(coalescing.upsert({"id": doc_id, "eventId": "ev-upsert"}) for doc_id in ids))

        assert (recorder.batches, sorted(recorder.single_upserts)) == ([], sorted(ids))

    async def test_coalesced_reads_go_in_one_query_per_partition(self, container: DocumentContainer):
        a, b, alone, missing = new_id(), new_id(), new_id(), new_id()
        await container.create({"id": a, "eventId": "ev-read-1", "n": 1})
        await container.create({"id": b, "eventId": "ev-read-1", "n": 2})
        await container.create({"id": alone, "eventId": "ev-read-2", "n": 3})
        recorder = RecordingWrites(container)
        coalescing = CoalescingContainer(recorder)  # type: ignore[arg-type]

        found = await asyncio.gather(
            coalescing.read(a, partition_key="ev-read-1"),
            coalescing.read(b, partition_key="ev-read-1"),
            coalescing.read(missing, partition_key="ev-read-1"),
            coalescing.read(a, partition_key="ev-read-1"),
            coalescing.read(alone, partition_key="ev-read-2"),
            coalescing.read(a, partition_key="ev-read-2"),  # the same id in another partition: absent
            return_exceptions=True,
        )

        assert [doc["n"] for doc in (found[0], found[1], found[3], found[4])] == [1, 2, 1, 3]
        assert isinstance(found[2], DocumentNotFoundError)
        assert isinstance(found[5], DocumentNotFoundError)
        assert recorder.read_manys == [("ev-read-1", [a, b, missing]), ("ev-read-2", [alone, a])]
        assert recorder.single_reads == []
        assert "_etag" in found[0]
        alone_again = await coalescing.read(alone, partition_key="ev-read-2")
        assert (alone_again["n"], recorder.single_reads) == (3, [alone])  # a lone read is a point read
