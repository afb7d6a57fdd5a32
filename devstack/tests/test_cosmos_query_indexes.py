"""Queries that pin a path to values, answered by the stand-in's equality indexes, driven through the SDK.

The stand-in runs such queries over the documents its indexes name instead of the whole container
(devstack/patches, ``field-index.js``). Each answer here is checked against a plain-Python evaluation of
the same condition over the documents the test wrote, after creates, replaces and deletes that move
documents between index keys, so a stale or missing index entry shows as a wrong answer.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest
from azure.cosmos import PartitionKey

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration

_MISSING = object()
# Values of one field across documents: types that Cosmos DB's `=` tells apart, and shapes it never equals.
_VALUES: list[Any] = ["a", "b", "1", 1, 1.5, 0, True, "true", None, _MISSING, {"k": 1}, [1]]

Document = dict[str, Any]


def _document(rng: random.Random, n: int) -> Document:
    document: Document = {"id": f"doc-{n}", "pk": f"p{n % 4}", "nested": {}}
    for field in ("f", "g"):
        value = rng.choice(_VALUES)
        if value is not _MISSING:
            document[field] = value
    inner = rng.choice(_VALUES)
    if inner is not _MISSING:
        document["nested"]["h"] = inner
    return document


def _equal(document_value: Any, value: Any) -> bool:
    """Cosmos DB's `=` on scalars: same type and value (a bool is not a number)."""
    if document_value is _MISSING or isinstance(document_value, (dict, list)):
        return False
    if isinstance(document_value, bool) or isinstance(value, bool):
        return isinstance(document_value, bool) and isinstance(value, bool) and document_value == value
    if isinstance(document_value, (int, float)) and isinstance(value, (int, float)):
        return document_value == value
    return type(document_value) is type(value) and document_value == value


def _field(document: Document, *path: str) -> Any:
    current: Any = document
    for key in path:
        if not isinstance(current, dict) or key not in current:
            return _MISSING
        current = current[key]
    return current


Case = tuple[str, list[dict[str, Any]], "Callable[[Document], bool]"]


def _cases() -> list[Case]:
    f, g, h = (lambda d: _field(d, "f")), (lambda d: _field(d, "g")), (lambda d: _field(d, "nested", "h"))
    return [
        ("SELECT * FROM c WHERE c.f = @v", [{"name": "@v", "value": "a"}], lambda d: _equal(f(d), "a")),
        ("SELECT * FROM c WHERE c.f = @v", [{"name": "@v", "value": 1}], lambda d: _equal(f(d), 1)),
        (
            "SELECT * FROM c WHERE @v = c.f",
            [{"name": "@v", "value": True}],
            lambda d: _equal(f(d), value=True),
        ),
        ("SELECT * FROM c WHERE c.f = null", [], lambda d: _equal(f(d), None)),
        ("SELECT * FROM c WHERE c.f = '1'", [], lambda d: _equal(f(d), "1")),
        ("SELECT * FROM c WHERE c.nested.h = 1.5", [], lambda d: _equal(h(d), 1.5)),
        ('SELECT * FROM c WHERE c["g"] = "b"', [], lambda d: _equal(g(d), "b")),
        (
            "SELECT * FROM c WHERE ARRAY_CONTAINS(@vs, c.f)",
            [{"name": "@vs", "value": ["a", 1, "true"]}],
            lambda d: any(_equal(f(d), v) for v in ("a", 1, "true")),
        ),
        (
            "SELECT * FROM c WHERE ARRAY_CONTAINS(@vs, c.f) AND c.g = @w",
            [{"name": "@vs", "value": ["b", 0]}, {"name": "@w", "value": "a"}],
            lambda d: any(_equal(f(d), v) for v in ("b", 0)) and _equal(g(d), "a"),
        ),
        (
            "SELECT * FROM c WHERE c.f = @v OR c.nested.h = @v OR c.g = 'b'",
            [{"name": "@v", "value": "a"}],
            lambda d: _equal(f(d), "a") or _equal(h(d), "a") or _equal(g(d), "b"),
        ),
        (
            # One side of the OR pins nothing: the whole container is scanned, same answer.
            "SELECT * FROM c WHERE c.f = 'a' OR IS_DEFINED(c.g) = false",
            [],
            lambda d: _equal(f(d), "a") or g(d) is _MISSING,
        ),
        (
            "SELECT * FROM c WHERE c.f = 'a' AND c.g != 'a'",
            [],
            lambda d: _equal(f(d), "a") and g(d) is not _MISSING and not _equal(g(d), "a"),
        ),
        (
            # An array parameter compared whole: not narrowed, answered by the scan.
            "SELECT * FROM c WHERE c.f = @arr",
            [{"name": "@arr", "value": [1]}],
            lambda d: f(d) == [1],
        ),
    ]


async def _ids(container, query: str, parameters: list[dict[str, Any]], **kwargs: Any) -> list[str]:
    return sorted([row["id"] async for row in container.query_items(query, parameters=parameters, **kwargs)])


@pytest.fixture
async def container(cosmos_client, cosmos_connection):
    database = await cosmos_client.create_database_if_not_exists(cosmos_connection.database)
    name = f"indexed-{random.randrange(10**9)}"
    created = await database.create_container(name, partition_key=PartitionKey(path="/pk"))
    yield created
    await database.delete_container(name)


async def _check_every_case(container, documents: dict[str, Document]) -> None:
    for query, parameters, matches in _cases():
        expected = sorted(doc_id for doc_id, doc in documents.items() if matches(doc))
        assert await _ids(container, query, parameters) == expected, query
        # Scoped to one partition, the same condition sees only that partition's documents.
        in_p1 = sorted(doc_id for doc_id, doc in documents.items() if doc["pk"] == "p1" and matches(doc))
        assert await _ids(container, query, parameters, partition_key="p1") == in_p1, query


async def test_pinned_queries_answer_exactly_as_the_condition_says_through_writes(container):
    rng = random.Random(11)
    documents: dict[str, Document] = {}
    for n in range(60):
        document = _document(rng, n)
        await container.create_item(document)
        documents[document["id"]] = document
    # The first queries build the indexes; the writes after them must keep the indexes true.
    await _check_every_case(container, documents)
    for _ in range(3):
        for n in rng.sample(range(60), 20):
            document = _document(rng, n)
            await container.upsert_item(document)
            documents[document["id"]] = document
        for doc_id in rng.sample(sorted(documents), 5):
            await container.delete_item(doc_id, partition_key=documents.pop(doc_id)["pk"])
        for n in range(60, 65):
            document = _document(rng, n + len(documents) * 100)
            await container.create_item(document)
            documents[document["id"]] = document
        await _check_every_case(container, documents)


async def test_a_pinned_query_pages_by_continuation_without_loss_or_repeats(container):
    for n in range(25):
        await container.create_item({"id": f"d{n:02d}", "pk": f"p{n % 3}", "f": "x" if n % 2 else "y"})
    pages = container.query_items(
        "SELECT c.id FROM c WHERE c.f = @v", parameters=[{"name": "@v", "value": "x"}], max_item_count=4
    ).by_page()
    seen = [row["id"] async for page in pages async for row in page]
    assert sorted(seen) == [f"d{n:02d}" for n in range(25) if n % 2]
    assert len(seen) == len(set(seen))
