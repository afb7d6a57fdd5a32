"""Refund and dispute events applied to transactions, on the in-memory fake and on Cosmos DB."""

from __future__ import annotations

import pytest
from webhooks_fakes import container

from otcommon.payment_transactions import LISTED_DOCUMENTS_QUERY, PAYMENT_TRANSACTIONS_CONTAINER
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer
from webhooks.prefetch import TRANSACTIONS_BY_ID_QUERY
from webhooks.transactions import PAYMENT_QUERY

pytest.register_assert_rewrite("applying_contract")
from applying_contract import ApplyingContract, Stores  # noqa: E402


def paid_by(documents, parameters):
    """The in-memory answer to the applier's lookup by charge or PaymentIntent."""
    charge, intent = parameters["@charge"], parameters["@paymentIntent"]
    return [
        doc
        for doc in documents
        if doc.get("PaymentID") in (charge, intent)
        or doc.get("stripeChargeId") == charge
        or doc.get("stripePaymentIntentId") == intent
    ]


def with_ids(parameter: str):
    """The in-memory answer to a lookup of many documents by id."""
    return lambda documents, parameters: [doc for doc in documents if doc["id"] in parameters[parameter]]


class TestApplyingInMemory(ApplyingContract):
    @pytest.fixture
    def stores(self) -> Stores:
        return Stores(
            transactions=container(
                "transactions", **{PAYMENT_QUERY: paid_by, TRANSACTIONS_BY_ID_QUERY: with_ids("@ids")}
            ),
            index=container(PAYMENT_TRANSACTIONS_CONTAINER, **{LISTED_DOCUMENTS_QUERY: with_ids("@keys")}),
        )


@pytest.mark.integration
class TestApplyingCosmos(ApplyingContract):
    @pytest.fixture
    def stores(self, cosmos_client, provisioned) -> Stores:
        def of(name: str) -> CosmosContainer:
            spec = DEFAULT_TOPOLOGY.container(name)
            return CosmosContainer.of(cosmos_client, database=provisioned.database, spec=spec)

        return Stores(transactions=of("transactions"), index=of(PAYMENT_TRANSACTIONS_CONTAINER))
