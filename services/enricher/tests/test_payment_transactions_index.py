"""The enricher lists each payment's transactions under its PaymentID, charge and PaymentIntent ids.

The webhook service finds the orders of a refund or dispute by point reads of these documents
(``otcommon.payment_transactions``); run on the in-memory fake and on the Cosmos DB stand-in.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from test_handler import Setup, order
from world import NOW

from devstack.testing import fresh_database
from enricher.payment_transactions import PaymentTransactionsIndex
from otcommon.payment_transactions import (
    TransactionRef,
    listed_transactions,
    payment_transactions_document,
    payment_transactions_key,
    payment_transactions_partition,
)
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, DocumentNotFoundError
from otcommon.stripe_facts import FACT_PARTITIONS

ORG = "acct_org0000"


class Refusing:
    """An index container whose writes fail (Cosmos DB unreachable for them)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def create(self, document, **_options):
        raise ConnectionError(f"index write of {document['id']} refused")

    async def replace(self, document, **_options):
        raise ConnectionError(f"index write of {document['id']} refused")


class Counting:
    """An index container that counts its requests, by operation."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.requests: Counter[str] = Counter()

    def __getattr__(self, name: str):
        attribute = getattr(self._inner, name)
        if name not in {"read", "create", "replace", "upsert", "patch", "write_batch"}:
            return attribute

        async def counted(*args, **kwargs):
            self.requests[name] += 1
            return await attribute(*args, **kwargs)

        return counted


class PaymentTransactionsContract:
    async def listed(self, setup: Setup, stripe_id: str) -> list[TransactionRef]:
        key = payment_transactions_key(stripe_id)
        try:
            document = await setup.facts_container.read(
                key, partition_key=payment_transactions_partition(key)
            )
            return listed_transactions(document)
        except DocumentNotFoundError:
            return []

    async def test_every_transaction_of_the_payment_is_listed_under_each_of_its_ids(self, setup):
        charge_id, intent_id, _ = setup.world.charge_on(ORG)
        await setup.store(
            order("t1", event="ev1", payment_id=intent_id),
            order("t2", event="ev2", payment_id=intent_id),
            order("t3", event="ev1", payment_id="pi_other"),
        )
        await setup.handler.enrich(intent_id, requested_at=NOW)
        both = [TransactionRef("ev1", "t1"), TransactionRef("ev2", "t2")]
        assert await self.listed(setup, intent_id) == both
        assert await self.listed(setup, charge_id) == both  # the alias a refund or dispute may name alone
        assert await self.listed(setup, "pi_other") == []

    async def test_an_unresolved_payment_is_listed_under_its_payment_id(self, setup):
        await setup.store(order("t1", event="ev1", payment_id="pi_nobodyknows"))
        await setup.handler.enrich("pi_nobodyknows", requested_at=NOW)
        assert (await setup.stored("t1", "ev1"))["enrichmentState"] == "unresolved"
        assert await self.listed(setup, "pi_nobodyknows") == [TransactionRef("ev1", "t1")]

    async def test_entries_another_replica_listed_are_kept(self, setup):
        charge_id, intent_id, _ = setup.world.charge_on(ORG)
        elsewhere = TransactionRef("ev9", "t9")
        await setup.facts_container.create(payment_transactions_document(intent_id, [elsewhere]))
        await setup.store(order("t1", event="ev1", payment_id=intent_id))
        await setup.handler.enrich(intent_id, requested_at=NOW)
        assert await self.listed(setup, intent_id) == [TransactionRef("ev1", "t1"), elsewhere]
        assert await self.listed(setup, charge_id) == [TransactionRef("ev1", "t1")]

    async def test_the_ids_are_written_only_after_the_transactions_are_listed(self, setup):
        _, intent_id, _ = setup.world.charge_on(ORG)
        await setup.store(order("t1", event="ev1", payment_id=intent_id))
        writer = setup.handler._writer
        writer._payment_index = PaymentTransactionsIndex(Refusing(setup.facts_container))
        with pytest.raises(ConnectionError):
            await setup.handler.enrich(intent_id, requested_at=NOW)
        stored = await setup.stored("t1", "ev1")
        assert "stripeChargeId" not in stored
        assert stored["enrichmentState"] == "queued"  # the message is retried: nothing half-done

    async def test_payments_enriched_together_are_listed_in_a_few_batches_and_again_cost_nothing(self, setup):
        intents = [setup.world.charge_on(ORG)[1] or "" for _ in range(20)]
        for n, intent_id in enumerate(intents):
            await setup.store(order(f"t{n}", event=f"ev{n % 3}", payment_id=intent_id))
        counting = Counting(setup.facts_container)
        writer = setup.handler._writer
        writer._payment_index = PaymentTransactionsIndex(counting, linger_seconds=0.05)
        await asyncio.gather(*(setup.handler.enrich(p, requested_at=NOW) for p in intents))
        # 40 documents (each PaymentIntent, its PaymentID, and its charge): a batch per partition.
        assert set(counting.requests) == {"write_batch"}
        assert counting.requests["write_batch"] <= FACT_PARTITIONS
        for n, intent_id in enumerate(intents):
            assert await self.listed(setup, intent_id) == [TransactionRef(f"ev{n % 3}", f"t{n}")]
        await asyncio.gather(*(setup.handler.enrich(p, requested_at=NOW) for p in intents))
        # Remembered: a payout moving costs no index request.
        assert counting.requests["write_batch"] <= FACT_PARTITIONS
        assert set(counting.requests) == {"write_batch"}


class TestPaymentTransactionsInMemory(PaymentTransactionsContract):
    @pytest.fixture
    def setup(self) -> Setup:
        return Setup()


@pytest.mark.integration
class TestPaymentTransactionsCosmos(PaymentTransactionsContract):
    @pytest.fixture
    async def setup(self, cosmos_client):
        async with fresh_database(cosmos_client, "enricher") as name:

            def container(spec: str) -> CosmosContainer:
                return CosmosContainer.of(cosmos_client, database=name, spec=DEFAULT_TOPOLOGY.container(spec))

            yield Setup(
                transactions=container("transactions"),
                index=container("stripe-index"),
                facts=container("stripe-facts"),
            )
