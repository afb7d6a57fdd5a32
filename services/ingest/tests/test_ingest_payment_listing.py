"""Ingest lists an order under its payment's ``transactions-of:`` document before it stores it.

The enricher creates the document when it enriches the payment; a second order of that payment
stored later (another order paid by the same payment, a re-import) must be found by the webhook
service's point reads at once, not only once the enricher handles it. Run on the fake and on
Cosmos DB.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from ingest_fakes import api_row, container

from ingest.mapping import map_api_row
from ingest.storage import TransactionWriter
from otcommon.payment_transactions import (
    PAYMENT_TRANSACTIONS_CONTAINER,
    TransactionRef,
    listed_transactions,
    payment_transactions_document,
    payment_transactions_key,
    payment_transactions_partition,
)
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, DocumentNotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from otcommon.store import BatchWrite, Document, DocumentContainer


class ListedWhenStored:
    """The transactions container, noting for each order written what its payment's document listed then."""

    def __init__(self, inner: DocumentContainer, index: DocumentContainer) -> None:
        self._inner = inner
        self._index = index
        self.listed_at_write: dict[str, bool] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _note(self, document: Mapping[str, Any]) -> None:
        key = payment_transactions_key(str(document["PaymentID"]))
        try:
            listed = listed_transactions(
                await self._index.read(key, partition_key=payment_transactions_partition(key))
            )
        except DocumentNotFoundError:
            listed = []
        ref = TransactionRef(event_id=str(document["eventId"]), transaction_id=str(document["id"]))
        self.listed_at_write[str(document["id"])] = ref in listed

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[Document]:
        for write in writes:
            await self._note(write.document)
        return await self._inner.write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )

    async def create(self, document: Mapping[str, Any]) -> Document:
        await self._note(document)
        return await self._inner.create(document)


class PaymentListing:
    """Subclasses give ``transactions`` and ``index`` fixtures (fake or Cosmos DB)."""

    @pytest.fixture
    def event(self) -> str:
        return f"ev-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def payment(self) -> str:
        return f"pi_{uuid.uuid4().hex[:16]}"

    def row(self, n: int, *, event: str, payment: str) -> Any:
        return map_api_row(api_row(n, event=event, PaymentID=payment))

    async def listed(self, index: DocumentContainer, payment: str) -> Document:
        key = payment_transactions_key(payment)
        return await index.read(key, partition_key=payment_transactions_partition(key))

    async def test_a_second_order_of_a_listed_payment_is_listed_before_it_is_stored(
        self, transactions, index, event, payment
    ):
        first = TransactionRef(event_id=event, transaction_id="tx-1")
        await index.create(payment_transactions_document(payment, [first]))  # the enricher's
        watched = ListedWhenStored(transactions, index)
        writer = TransactionWriter(watched, payment_index=index)  # type: ignore[arg-type]

        await writer.write([self.row(2, event=event, payment=payment)])

        second = TransactionRef(event_id=event, transaction_id="tx-2")
        assert listed_transactions(await self.listed(index, payment)) == [first, second]
        assert watched.listed_at_write == {"tx-2": True}

    async def test_a_payment_without_a_document_gets_none_from_ingest(
        self, transactions, index, event, payment
    ):
        # The enricher creates it with every order it finds; until then readers use the query.
        await TransactionWriter(transactions, payment_index=index).write(
            [self.row(3, event=event, payment=payment)]
        )
        with pytest.raises(DocumentNotFoundError):
            await self.listed(index, payment)

    async def test_orders_listed_already_cost_no_write(self, transactions, index, event, payment):
        refs = [TransactionRef(event_id=event, transaction_id=f"tx-{n}") for n in (4, 5)]
        await index.create(payment_transactions_document(payment, refs))
        before = await self.listed(index, payment)
        writer = TransactionWriter(transactions, payment_index=index)
        await writer.write([self.row(n, event=event, payment=payment) for n in (4, 5)])
        assert (await self.listed(index, payment))["_etag"] == before["_etag"]


class TestPaymentListingInMemory(PaymentListing):
    @pytest.fixture
    def transactions(self) -> DocumentContainer:
        return container("transactions")

    @pytest.fixture
    def index(self) -> DocumentContainer:
        return container(PAYMENT_TRANSACTIONS_CONTAINER)


@pytest.mark.integration
class TestPaymentListingCosmos(PaymentListing):
    @pytest.fixture
    def transactions(self, cosmos_client, provisioned) -> DocumentContainer:
        spec = DEFAULT_TOPOLOGY.container("transactions")
        return CosmosContainer.of(cosmos_client, database=provisioned.database, spec=spec)

    @pytest.fixture
    def index(self, cosmos_client, provisioned) -> DocumentContainer:
        spec = DEFAULT_TOPOLOGY.container(PAYMENT_TRANSACTIONS_CONTAINER)
        return CosmosContainer.of(cosmos_client, database=provisioned.database, spec=spec)
