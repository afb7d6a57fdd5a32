"""The event journal on the in-memory fake and on the Cosmos DB stand-in."""

from __future__ import annotations

import asyncio

import pytest
from webhooks_fakes import Clock, container, unapplied

from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, DocumentContainer, InMemoryContainer, StoreError
from webhooks.journal import UNAPPLIED_QUERY, EventJournal

pytest.register_assert_rewrite("journal_contract")
from journal_contract import JournalContract, events_in_one_bucket  # noqa: E402


@pytest.fixture
def clock() -> Clock:
    return Clock()


class TestJournalInMemory(JournalContract):
    @pytest.fixture
    def events(self) -> DocumentContainer:
        return container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})


@pytest.mark.integration
class TestJournalCosmos(JournalContract):
    @pytest.fixture
    def events(self, cosmos_client, provisioned) -> DocumentContainer:
        spec = DEFAULT_TOPOLOGY.container("webhook-journal")
        return CosmosContainer.of(cosmos_client, database=provisioned.database, spec=spec)


class BatchesRefused(InMemoryContainer):
    """Refuses every transactional batch as a whole, as Cosmos DB refuses one over its size limit."""

    def __init__(self) -> None:
        super().__init__("webhook-journal", partition_key_path="/bucket")

    async def write_batch(self, writes, **options):
        del writes, options
        raise StoreError("request entity too large")


async def test_records_refused_as_one_batch_are_created_one_by_one():
    events = BatchesRefused()
    journal = EventJournal(events)
    stripe_events = events_in_one_bucket(5)
    etags = await asyncio.gather(*(journal.record(each) for each in stripe_events))
    stored = {doc["id"]: doc["_etag"] for doc in events.documents()}
    assert stored == {each.id: etag for each, etag in zip(stripe_events, etags, strict=True)}
