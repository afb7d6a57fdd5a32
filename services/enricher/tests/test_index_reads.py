"""What a payment costs in Cosmos DB reads: settled index documents stay in memory, moving ones do not."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from world import DAY, T_NOW, Clock, new_world

from enricher.findings import Findings
from enricher.indexer import Indexer
from enricher.indexes import PAYOUT_MEMO_SECONDS, StripeIndex
from enricher.service import PaymentEnricher
from otcommon.store import BatchWrite, InMemoryContainer
from otcommon.stripe_facts import FACT_PARTITIONS

if TYPE_CHECKING:
    from collections.abc import Sequence

ORG = "acct_org0000"


class CountingContainer(InMemoryContainer):
    """An in-memory index container counting point reads and writes by key kind (``payment``, ...).

    Its ``facts`` is the ``stripe-facts`` container beside it, counted in the same counters.
    """

    def __init__(
        self, name: str = "stripe-index", partition_key_path: str = "/id", *, of: Any = None
    ) -> None:
        super().__init__(name, partition_key_path=partition_key_path)
        self.reads: Counter[str] = of.reads if of else Counter()
        self.upserts: Counter[str] = of.upserts if of else Counter()
        self.requests: Counter[str] = of.requests if of else Counter()
        self.facts = self if of else CountingContainer("stripe-facts", "/partition", of=self)

    async def upsert(self, document: Any) -> dict[str, Any]:
        self.requests[self.name] += 1
        self.upserts[str(document["id"]).split(":", 1)[0]] += 1
        return await super().upsert(document)

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[dict[str, Any]]:
        self.requests[self.name] += 1
        for write in writes:
            self.upserts[str(write.document["id"]).split(":", 1)[0]] += 1
        return await super().write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        self.reads[document_id.split(":", 1)[0]] += 1
        # A read over the network lets other messages run meanwhile; the in-memory one would not.
        await asyncio.sleep(0)
        return await super().read(document_id, partition_key=partition_key)


def index_on(container: CountingContainer, **options: Any) -> StripeIndex:
    return StripeIndex(container, facts=container.facts, **options)


def enricher_on(
    world_stripe: Any, container: CountingContainer, clock: Clock, **options: Any
) -> PaymentEnricher:
    index = index_on(container, **options)
    indexer = Indexer(gateway=world_stripe, index=index, clock=clock)
    return PaymentEnricher(gateway=world_stripe, index=index, indexer=indexer, clock=clock)


class Seconds:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class HeldRead(CountingContainer):
    """Holds the answer of the first read of ``key`` (already read) until ``release`` is set."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.release = asyncio.Event()
        self._holding = True

    async def read(self, document_id: str, *, partition_key: Any) -> dict[str, Any]:
        found = await super().read(document_id, partition_key=partition_key)
        if document_id == self.key and self._holding:
            self._holding = False
            await self.release.wait()
        return found


async def test_a_payment_enriched_again_reads_only_the_documents_that_move():
    world = new_world()
    ids = world.destination_charge(ORG)
    world.pay_out([ids["py_txn"]], on=ORG, status="in_transit")
    container, clock, seconds = CountingContainer(), Clock(), Seconds()
    enricher = enricher_on(world.stripe, container, clock, monotonic=seconds)
    first = await enricher.enrich(ids["intent"], requested_at=clock())
    assert isinstance(first, Findings)
    assert first.payout.bank_last4 == "0000"

    container.reads.clear()
    seconds.now += PAYOUT_MEMO_SECONDS
    again = await enricher.enrich(ids["intent"], requested_at=clock())
    assert again == first
    # Accounts, the payment, its transfer, the payout link and the bank account are settled facts:
    # no read of them.
    settled = ("account", "payment", "transfer", "txn", "bank")
    assert {kind: container.reads[kind] for kind in settled} == dict.fromkeys(settled, 0)
    # The payout (its status moves) is read from Cosmos DB again once the few seconds it is kept passed.
    assert container.reads["payout"] == 1
    # Within them, it is not.
    assert await enricher.enrich(ids["intent"], requested_at=clock()) == first
    assert container.reads["payout"] == 1


async def test_concurrent_reads_of_a_payout_share_one_read_and_a_write_makes_the_next_read_again():
    container = CountingContainer()
    index = index_on(container, monotonic=Seconds())
    await container.upsert({"id": "payout:po_1", "status": "pending"})
    found = await asyncio.gather(*(index.get("payout:po_1") for _ in range(10)))
    assert [payout["status"] for payout in found if payout] == ["pending"] * 10
    assert container.reads["payout"] == 1


async def test_a_payout_read_answered_after_this_replicas_write_does_not_bring_back_the_older_state():
    container, seconds = HeldRead("payout:po_1"), Seconds()
    index = index_on(container, monotonic=seconds)
    await container.upsert({"id": "payout:po_1", "status": "pending"})
    reading = asyncio.ensure_future(index.get("payout:po_1"))
    while container.reads["payout"] < 1:
        await asyncio.sleep(0)  # read ("pending"); its answer is held
    await index.put_payout("po_1", status="paid")
    assert container.reads["payout"] == 2  # the write's own read
    container.release.set()
    assert ((await reading) or {})["status"] == "pending"  # asked before the write
    # Later callers get the write's state, without a read, not the held read's older one.
    assert ((await index.get("payout:po_1")) or {})["status"] == "paid"
    assert container.reads["payout"] == 2
    seconds.now += PAYOUT_MEMO_SECONDS
    assert ((await index.get("payout:po_1")) or {})["status"] == "paid"
    assert container.reads["payout"] == 3


async def test_listing_the_same_charges_again_rewrites_nothing_this_replica_holds():
    world = new_world(connected=1)
    payments = [world.charge_on(ORG)[0] for _ in range(5)]
    container, clock = CountingContainer(), Clock()
    index = index_on(container)
    indexer = Indexer(gateway=world.stripe, index=index, clock=clock, overlap_seconds=10**9)
    await indexer.ensure_charges(ORG, as_of=clock())
    written = container.upserts["payment"]
    assert written >= len(payments)
    clock.advance(1)
    await indexer.ensure_charges(ORG, as_of=clock())  # the overlap lists every charge again
    assert container.upserts["payment"] == written
    for payment_id in payments:
        assert await index.payment(payment_id) is not None


async def test_a_refresh_starts_from_the_mark_held_and_moves_it_forward_past_another_replicas():
    world = new_world(connected=1)
    container, clock = CountingContainer(), Clock()
    ours, theirs = index_on(container), index_on(container)
    indexer = Indexer(gateway=world.stripe, index=ours, clock=clock)
    await indexer.ensure_charges(ORG, as_of=clock())
    await indexer.wait_ahead()  # the payouts listed beside the first charges listing
    reads = container.reads["cursor"]
    # Another replica's refresh, started at the same moment, got further (a newer cursor).
    await theirs.advance("charges", ORG, created_cursor=T_NOW + 7_200, started_at=clock())
    clock.advance(1)
    await indexer.ensure_charges(ORG, as_of=clock())
    # Reads: theirs moving the mark, and ours checking whether a refresh is needed (which also
    # brought the held mark up to date); the refresh's cursor and the move of the mark read nothing.
    assert container.reads["cursor"] == reads + 2
    stored = await theirs.mark("charges", ORG, stored=True)
    assert (stored.created_cursor, stored.started_at) == (T_NOW + 7_200, clock())


async def test_a_document_missing_once_is_found_when_another_replica_writes_it():
    container = CountingContainer()
    first, second = index_on(container), index_on(container)
    assert await first.payment("pi_later") is None
    await second.put_charge({"id": "ch_later", "payment_intent": "pi_later"}, account=ORG)
    found = await first.payment("pi_later")
    assert found is not None
    assert found.account == ORG


async def test_the_memory_keeps_only_the_most_recently_used_documents():
    container = CountingContainer()
    index = index_on(container, memory_entries=2)
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
    # Five refreshes (accounts, the platform's and the account's charges, and their payouts, listed
    # beside the first charges listings), each reading its mark once (the first check finds it
    # missing; the refresh starts from no cursor and creates it without reading it again); not once
    # per waiting message and account (some 250 reads).
    assert container.reads["cursor"] <= 5


async def test_a_mark_found_missing_then_created_by_another_replica_only_moves_forward():
    container = CountingContainer()
    index, other_replica = index_on(container), index_on(container)
    earlier, later = Clock()(), Clock()() + timedelta(minutes=5)
    assert (await index.mark("charges", ORG)).created_cursor is None  # a cold start: missing

    await other_replica.advance("charges", ORG, created_cursor=200, started_at=later)
    await index.advance("charges", ORG, created_cursor=100, started_at=earlier)

    stored = await other_replica.mark("charges", ORG, stored=True)
    assert (stored.created_cursor, stored.started_at) == (200, later)
    assert (await index.mark("charges", ORG)).created_cursor == 200


async def test_a_listed_page_costs_one_batch_per_partition_and_another_replica_reads_each_fact():
    world = new_world(connected=1)
    payments = [world.charge_on(ORG)[0] for _ in range(60)]  # and 60 PaymentIntents: one page, 120 facts
    container, clock = CountingContainer(), Clock()
    indexer = Indexer(gateway=world.stripe, index=index_on(container), clock=clock)
    await indexer.ensure_charges(ORG, as_of=clock())
    assert container.upserts["payment"] == 120
    assert container.requests["stripe-facts"] <= FACT_PARTITIONS
    other_replica = index_on(container)
    for payment_id in payments:
        found = await other_replica.payment(payment_id)
        assert found is not None
        assert found.account == ORG


async def test_listings_running_at_once_write_their_pages_in_shared_batches():
    world = new_world(connected=2)
    accounts = ["acct_org0000", "acct_org0001"]
    for account in accounts:
        for _ in range(30):
            world.charge_on(account)  # and its PaymentIntent: one page of 60 facts per account
    container, clock = CountingContainer(), Clock()
    indexer = Indexer(gateway=world.stripe, index=index_on(container), clock=clock)

    await asyncio.gather(*(indexer.ensure_charges(account, as_of=clock()) for account in accounts))

    assert container.upserts["payment"] == 120
    # One batch per partition for both pages, not one per page and partition.
    assert container.requests["stripe-facts"] <= FACT_PARTITIONS


async def test_funds_not_available_yet_cost_no_read_of_a_payout_link():
    world = new_world(connected=1)
    charge_id, _, _ = world.charge_on(ORG, available_on=T_NOW + DAY)
    container, clock = CountingContainer(), Clock()
    found = await enricher_on(world.stripe, container, clock).enrich(charge_id, requested_at=clock())
    assert isinstance(found, Findings)
    assert (found.payout.available_on, found.payout.payout_id) == (T_NOW + DAY, None)
    assert found.deposit_status.value == "pending"
    assert container.reads["txn"] == 0


async def test_the_contents_of_a_listed_page_of_payouts_are_linked_in_one_batch_per_partition():
    world = new_world(connected=1)
    payouts = {}
    for _ in range(6):
        txns = [world.charge_on(ORG)[2] for _ in range(5)]
        payouts[world.pay_out(txns, on=ORG)] = txns
    container, clock = CountingContainer(), Clock()
    indexer = Indexer(gateway=world.stripe, index=index_on(container), clock=clock)
    await indexer.ensure_payouts(ORG, as_of=clock())
    assert container.upserts["txn"] == 30
    assert container.requests["stripe-facts"] <= FACT_PARTITIONS
    other_replica = index_on(container)
    for payout_id, txns in payouts.items():
        for txn in txns:
            assert ((await other_replica.get(f"txn:{txn}")) or {}).get("payout") == payout_id
        assert ((await other_replica.get(f"payout:{payout_id}")) or {}).get("balanceTransactions") == txns
