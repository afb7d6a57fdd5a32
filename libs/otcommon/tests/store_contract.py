"""Behaviour every DocumentContainer must have; run against the fake and against Cosmos DB."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from otcommon.store import (
    CONTENT_HASH_FIELD,
    BatchWrite,
    BatchWriteError,
    DocumentContainer,
    DocumentExistsError,
    DocumentNotFoundError,
    EtagMismatchError,
    read_modify_write,
    upsert_if_changed,
)


def new_id() -> str:
    return uuid.uuid4().hex


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

        result = await read_modify_write(container, doc_id, partition_key="ev1", mutate=add_one)
        assert result["count"] == 11

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
