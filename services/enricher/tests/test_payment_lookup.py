"""Looking up the transactions of payments enriched at the same time: one query for them all."""

from __future__ import annotations

import asyncio
from typing import Any

from enricher.lookup import TRANSACTIONS_OF_PAYMENTS, PaymentTransactions
from enricher.writer import EnrichmentWriter
from otcommon.store import InMemoryContainer, StoreError


class CountingTransactions(InMemoryContainer):
    """The in-memory transactions container, counting queries (and failing them when told)."""

    def __init__(self, *, failing: bool = False) -> None:
        super().__init__(
            "transactions",
            partition_key_path="/eventId",
            queries={
                TRANSACTIONS_OF_PAYMENTS: lambda docs, params: [
                    doc for doc in docs if doc.get("PaymentID") in params["@paymentIds"]
                ]
            },
        )
        self.queries = 0
        self.reads = 0
        self.failing = failing

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        self.reads += 1
        return await super().read(document_id, partition_key=partition_key)

    async def query(self, query: str, **options: Any):  # type: ignore[no-untyped-def, override]
        self.queries += 1
        await asyncio.sleep(0)  # a query over the network lets other lookups arrive meanwhile
        if self.failing:
            raise StoreError("Cosmos DB answered 503")
        async for page in super().query(query, **options):
            yield page


async def test_lookups_asked_together_share_one_query_and_each_gets_its_own_rows():
    container = CountingTransactions()
    for n in range(30):
        await container.create({"id": f"t{n}", "eventId": f"ev{n % 3}", "PaymentID": f"pi_{n % 10}"})
    lookup = PaymentTransactions(container, max_payments=100)
    found = await asyncio.gather(*(lookup.of(f"pi_{n}") for n in range(12)))
    assert container.queries == 1
    first_two = [sorted(doc["id"] for doc in rows) for rows in found[:2]]
    assert first_two == [["t0", "t10", "t20"], ["t1", "t11", "t21"]]
    assert found[10:] == [[], []]  # no transaction carries pi_10 or pi_11
    assert all(doc["_etag"] for rows in found for doc in rows)


async def test_a_query_takes_at_most_its_share_of_ids_and_the_rest_follow():
    container = CountingTransactions()
    await container.create({"id": "t1", "eventId": "ev1", "PaymentID": "pi_1"})
    lookup = PaymentTransactions(container, max_payments=4)
    found = await asyncio.gather(*(lookup.of(f"pi_{n}") for n in range(10)))
    assert container.queries == 3
    assert [len(rows) for rows in found] == [0, 1, *[0] * 8]


async def test_a_failed_query_fails_every_lookup_that_shared_it_and_the_next_ones_query_again():
    container = CountingTransactions(failing=True)
    lookup = PaymentTransactions(container)
    outcomes = await asyncio.gather(*(lookup.of(f"pi_{n}") for n in range(5)), return_exceptions=True)
    assert all(isinstance(outcome, StoreError) for outcome in outcomes)
    container.failing = False
    assert await lookup.of("pi_1") == []
    assert container.queries == 2


async def test_the_writer_replaces_under_the_etag_the_lookup_found_without_reading_again():
    container = CountingTransactions()
    for n in range(4):
        queued = {"PaymentID": f"pi_{n % 2}", "enrichmentState": "queued"}
        await container.create({"id": f"t{n}", "eventId": "ev1", **queued})
    writer = EnrichmentWriter(container)
    written = await asyncio.gather(
        *(writer.apply(payment_id=f"pi_{n}", fields={"enrichmentState": "unresolved"}) for n in range(2))
    )
    assert [len(each) for each in written] == [2, 2]
    assert all(w.changed for each in written for w in each)
    assert (container.queries, container.reads) == (1, 0)
