"""The event journal on the in-memory fake and on the Cosmos DB stand-in."""

from __future__ import annotations

import pytest
from webhooks_fakes import Clock, container, unapplied

from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, DocumentContainer
from webhooks.journal import UNAPPLIED_QUERY

pytest.register_assert_rewrite("journal_contract")
from journal_contract import JournalContract  # noqa: E402


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
