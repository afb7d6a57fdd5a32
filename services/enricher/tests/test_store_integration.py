"""The enricher's reads and writes against the Cosmos DB stand-in: its queries, the index, the patches."""

from __future__ import annotations

import pytest
from test_handler import Setup, order
from world import DAY, NOW, T_NOW

from devstack.testing import fresh_database
from enricher.indexes import StripeIndex
from enricher.refresh import refresh_open_payouts
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer

pytestmark = pytest.mark.integration

ORG = "acct_org0000"


@pytest.fixture
async def containers(cosmos_client):
    async with fresh_database(cosmos_client, "enricher") as name:

        def container(spec: str) -> CosmosContainer:
            return CosmosContainer.of(cosmos_client, database=name, spec=DEFAULT_TOPOLOGY.container(spec))

        yield container("transactions"), container("stripe-index"), container("stripe-facts")


async def test_enrichment_lands_on_every_transaction_and_refresh_payouts_finds_the_pending(containers):
    transactions, index, facts = containers
    setup = Setup(transactions=transactions, index=index, facts=facts)
    charge_id, _, txn = setup.world.charge_on(ORG, available_on=T_NOW + DAY)
    await setup.store(
        order("t1", event="ev1", payment_id=charge_id),
        order("t2", event="ev2", payment_id=charge_id),
        order("t3", event="ev2", payment_id="ch_someoneelse"),
    )
    await setup.handler.enrich(charge_id, requested_at=NOW)
    for transaction_id, event in (("t1", "ev1"), ("t2", "ev2")):
        stored = await setup.stored(transaction_id, event)
        assert (stored["enrichmentState"], stored["depositStatus"]) == ("enriched", "pending")
        assert stored["disputeStatus"] == "won"
    assert "depositStatus" not in await setup.stored("t3", "ev2")

    calls = setup.world.stripe.calls.total
    await setup.handler.enrich(charge_id, requested_at=NOW)
    assert setup.world.stripe.calls.total == calls  # the index in Cosmos answered

    setup.clock.advance(2 * DAY)
    payout_id = setup.world.pay_out([txn], on=ORG, created=T_NOW + DAY + 60)
    report = await refresh_open_payouts(
        transactions=transactions, handler=setup.handler, payouts=setup.payouts, clock=setup.clock
    )
    assert report.payments == 1
    stored = await setup.stored("t2", "ev2")
    assert (stored["depositStatus"], stored["stripePayoutId"]) == ("paid", payout_id)


async def test_a_listed_page_is_written_in_batches_that_another_replica_reads(containers):
    _, index, facts = containers
    setup = Setup(index=index, facts=facts)
    payments = [setup.world.charge_on(ORG)[0] for _ in range(60)]  # and their PaymentIntents: 120 facts
    await setup.indexer.ensure_charges(ORG, as_of=NOW)
    other_replica = StripeIndex(index, facts=facts)
    for payment_id in payments:
        found = await other_replica.payment(payment_id)
        assert found is not None
        assert (found.account, found.charge["id"]) == (ORG, payment_id)
