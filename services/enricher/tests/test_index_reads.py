"""What a payment costs in Cosmos DB reads: settled index documents stay in memory, moving ones do not."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from world import Clock, new_world

from enricher.findings import Findings
from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.service import PaymentEnricher
from otcommon.store import InMemoryContainer

ORG = "acct_org0000"


class CountingContainer(InMemoryContainer):
    """The in-memory index container, counting point reads by key kind (``payment``, ``cursor``, ...)."""

    def __init__(self) -> None:
        super().__init__("stripe-index", partition_key_path="/id")
        self.reads: Counter[str] = Counter()

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        self.reads[document_id.split(":", 1)[0]] += 1
        # A read over the network lets other messages run meanwhile; the in-memory one would not.
        await asyncio.sleep(0)
        return await super().read(document_id, partition_key=partition_key)


def enricher_on(world_stripe: Any, container: CountingContainer, clock: Clock) -> PaymentEnricher:
    index = StripeIndex(container)
    indexer = Indexer(gateway=world_stripe, index=index, clock=clock)
    return PaymentEnricher(gateway=world_stripe, index=index, indexer=indexer, clock=clock)


async def test_a_payment_enriched_again_reads_only_the_documents_that_move():
    world = new_world()
    ids = world.destination_charge(ORG)
    world.pay_out([ids["py_txn"]], on=ORG, status="in_transit")
    container, clock = CountingContainer(), Clock()
    enricher = enricher_on(world.stripe, container, clock)
    first = await enricher.enrich(ids["intent"], requested_at=clock())
    assert isinstance(first, Findings)
    assert first.payout.bank_last4 == "0000"

    container.reads.clear()
    again = await enricher.enrich(ids["intent"], requested_at=clock())
    assert again == first
    # Accounts, the payment, its transfer and the bank account are settled facts: no read of them.
    assert {
        kind: container.reads[kind] for kind in ("account", "payment", "transfer", "bank")
    } == dict.fromkeys(("account", "payment", "transfer", "bank"), 0)
    # The payout link and the payout (its status moves) are read from Cosmos DB each time.
    assert container.reads["txn"] == 1
    assert container.reads["payout"] == 1


async def test_a_document_missing_once_is_found_when_another_replica_writes_it():
    container = CountingContainer()
    first, second = StripeIndex(container), StripeIndex(container)
    assert await first.payment("pi_later") is None
    await second.put_charge({"id": "ch_later", "payment_intent": "pi_later"}, account=ORG)
    found = await first.payment("pi_later")
    assert found is not None
    assert found.account == ORG


async def test_the_memory_keeps_only_the_most_recently_used_documents():
    container = CountingContainer()
    index = StripeIndex(container, memory_entries=2)
    for n in range(3):
        await index.put(f"bank:ba_{n}", kind="bank", last4=f"000{n}")
    await index.get("bank:ba_2")
    await index.get("bank:ba_1")
    assert container.reads["bank"] == 0
    assert (await index.get("bank:ba_0") or {})["last4"] == "0000"
    assert container.reads["bank"] == 1


async def test_messages_waiting_for_a_refresh_in_flight_do_not_each_read_its_mark():
    world = new_world(connected=1)
    payments = [world.charge_on(ORG)[0] for _ in range(50)]
    container, clock = CountingContainer(), Clock()
    enricher = enricher_on(world.stripe, container, clock)
    await asyncio.gather(*(enricher.enrich(p, requested_at=clock()) for p in payments))
    # Four refreshes (accounts, the platform's and the account's charges, its payouts), each reading
    # its mark at most three times (the first check, the refresh's cursor, moving the mark forward);
    # not once per waiting message and account (some 200 reads).
    assert container.reads["cursor"] <= 4 * 3
