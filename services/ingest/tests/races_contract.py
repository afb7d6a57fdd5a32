"""Where ingest's writes race another writer's: each guard pinned, run against the fake and Cosmos DB.

Subclasses provide a ``stores`` fixture (:class:`Stores`). Every test here fails when the guard
it names is removed; services/ingest/DESIGN.md ("Writers and guards") lists them.

The other writer is simulated through the store interface the way it writes: the enricher
patches its fields and state, another replica takes the lease. Interleavings are forced with
events, never with sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from ingest_fakes import QUEUE, T0, api_row

from ingest.catalog import CatalogBacklog
from ingest.checkpoint import CheckpointStore, SyncCheckpoint
from ingest.lease import SyncLease
from ingest.mapping import map_api_row
from ingest.queueing import EnrichmentQueue
from ingest.storage import TransactionWriter
from otcommon.bus import InMemoryBus
from otcommon.messages import EnrichmentReason, decode_message
from otcommon.schemas import ExportRow, TicketTransaction, parse_timestamp
from otcommon.store import DocumentNotFoundError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence

    from ingest.storage import StoredChanges
    from otcommon.bus import MessagePublisher
    from otcommon.messages import Envelope, Message, PaymentEnrichmentRequested
    from otcommon.store import Document, DocumentContainer

OLD_REQUEST_AT = "2026-04-01T08:00:00.000Z"
ENRICHED_FIELDS: dict[str, Any] = {
    "stripeRouteType": "connected",
    "stripeChargeId": "ch_old",
    "stripePaymentIntentId": "pi_old",
    "stripeDestinationAccountId": "acct_old",
    "stripeNetAmount": 38.5,
    "stripeCurrency": "eur",
    "depositStatus": "paid",
    "stripePayoutStatus": "paid",
    "depositDate": "2026-04-03",
    "stripePayoutId": "po_old",
    "enrichedAt": "2026-04-02T09:00:00.000Z",
}
"""What the enricher writes for a payment it has traced (the old payment, in these tests)."""


@dataclass
class Stores:
    """The containers one test writes, and an event (partition) no other test uses."""

    transactions: DocumentContainer
    state: DocumentContainer
    event: str = field(default_factory=lambda: f"ev-{uuid.uuid4().hex[:10]}")


@dataclass
class Ingest:
    """Ingest's writer and queue over the stores, publishing to an in-memory queue."""

    stores: Stores
    bus: InMemoryBus
    writer: TransactionWriter
    queue: EnrichmentQueue

    @classmethod
    def over(cls, stores: Stores, *, publisher: Callable[[MessagePublisher], MessagePublisher] | None = None):
        bus = InMemoryBus(duplicate_detection_window_seconds=None)
        writer = TransactionWriter(stores.transactions, concurrency=4)
        plain = bus.publisher(queue=QUEUE)
        queue = EnrichmentQueue(
            publisher=publisher(plain) if publisher else plain,
            writer=writer,
            transactions=stores.transactions,
        )
        return cls(stores, bus, writer, queue)

    def rows(self, *numbers: int, **overrides: Any) -> list[TicketTransaction]:
        return [map_api_row(api_row(n, event=self.stores.event, **overrides)) for n in numbers]

    async def sync(self, transactions: list[TicketTransaction]) -> StoredChanges:
        """What a sync does with one page: store, then publish and mark queued what is pending."""
        changes = await self.writer.write(transactions)
        await self.queue.enqueue(changes.pending)
        return changes

    async def read(self, transaction_id: str) -> Document:
        return await self.stores.transactions.read(transaction_id, partition_key=self.stores.event)

    async def states(self, *transaction_ids: str) -> dict[str, str | None]:
        return {tx: (await self.read(tx)).get("enrichmentState") for tx in transaction_ids}

    def requests(self) -> list[PaymentEnrichmentRequested]:
        return [decode_message(raw).message for raw in self.bus.active_messages(queue=QUEUE)]


async def enricher_finishes(stores: Stores, transaction_id: str) -> None:
    """The enricher's write: its fields and the ``enriched`` state, replaced under the read's ETag.

    More than a patch may carry (Cosmos DB takes at most 10 operations in one patch).
    """
    stored = await stores.transactions.read(transaction_id, partition_key=stores.event)
    enriched = {**stored, **ENRICHED_FIELDS, "enrichmentState": "enriched"}
    await stores.transactions.replace(enriched, etag=stored["_etag"])


async def payout_paid(stores: Stores, transaction_id: str) -> None:
    """The enricher's later write for the same payment: its payout reached the bank."""
    await stores.transactions.patch(
        transaction_id,
        partition_key=stores.event,
        operations=[{"op": "set", "path": "/stripePayoutStatus", "value": "paid"}],
    )


class EnricherOnPublish:
    """A publisher whose messages the enricher handles before ``publish`` even returns.

    The tightest interleaving there is: the enricher's write lands between ingest's publish and
    its mark-queued.
    """

    def __init__(self, inner: MessagePublisher, stores: Stores) -> None:
        self._inner = inner
        self._stores = stores

    async def publish(self, envelopes: Iterable[Envelope[Message]]) -> None:
        sent = list(envelopes)
        await self._inner.publish(sent)
        for envelope in sent:
            await enricher_finishes(self._stores, envelope.message.transaction_id)

    async def close(self) -> None:
        await self._inner.close()


class WriterRaces:
    """Ingest's transaction writes against the enricher's."""

    @pytest.fixture
    def ingest(self, stores: Stores) -> Ingest:
        return Ingest.over(stores)

    async def test_a_new_payment_id_drops_the_old_enrichment_and_queues_the_new_payment(self, ingest: Ingest):
        await ingest.sync(ingest.rows(1))
        # A requeue stamped the old payment's request, then the enricher traced it.
        await ingest.stores.transactions.patch(
            "tx-1",
            partition_key=ingest.stores.event,
            operations=[
                {
                    "op": "set",
                    "path": "/enrichmentRequest",
                    "value": {"reason": "requeue", "at": OLD_REQUEST_AT},
                }
            ],
        )
        await enricher_finishes(ingest.stores, "tx-1")
        published = len(ingest.requests())

        await ingest.sync(ingest.rows(1, updated=T0 + timedelta(hours=1), PaymentID="pi_000777"))

        stored = await ingest.read("tx-1")
        assert stored["PaymentID"] == "pi_000777"
        assert {name: stored.get(name) for name in ENRICHED_FIELDS} == dict.fromkeys(ENRICHED_FIELDS)
        assert stored.get("enrichmentRequest") is None
        assert stored["enrichmentState"] == "queued"
        new_requests = ingest.requests()[published:]
        assert [(m.payment_id, m.reason) for m in new_requests] == [("pi_000777", EnrichmentReason.NEW)]
        # Requested now, not at the old payment's requeue.
        assert new_requests[0].requested_at > parse_timestamp(OLD_REQUEST_AT) + timedelta(days=1)

    async def test_a_removed_payment_id_drops_the_enrichment_and_queues_nothing(self, ingest: Ingest):
        await ingest.sync(ingest.rows(1))
        await enricher_finishes(ingest.stores, "tx-1")
        published = len(ingest.requests())
        await ingest.sync(ingest.rows(1, updated=T0 + timedelta(hours=1), PaymentID="", PaymentMethod="cash"))
        stored = await ingest.read("tx-1")
        assert {name: stored.get(name) for name in ENRICHED_FIELDS} == dict.fromkeys(ENRICHED_FIELDS)
        assert stored["enrichmentState"] is None
        assert len(ingest.requests()) == published

    async def test_the_fallback_after_a_failed_batch_keeps_a_state_the_enricher_wrote(self, ingest: Ingest):
        changes = await ingest.writer.write(ingest.rows(1, 2))
        pending = {doc["id"]: doc for doc in changes.pending}
        # tx-1 is enriched after it was read as pending: the batch's ETag for it is stale, the batch
        # fails, and each payment is marked on its own.
        await enricher_finishes(ingest.stores, "tx-1")
        await ingest.writer.mark_queued([pending["tx-1"], pending["tx-2"]])
        assert await ingest.states("tx-1", "tx-2") == {"tx-1": "enriched", "tx-2": "queued"}
        assert (await ingest.read("tx-1"))["stripeChargeId"] == "ch_old"

    async def test_an_enrichment_between_publish_and_mark_queued_survives(self, stores: Stores):
        ingest = Ingest.over(stores, publisher=lambda plain: EnricherOnPublish(plain, stores))
        await ingest.sync(ingest.rows(1, 2, 3))
        assert len(ingest.requests()) == 3
        assert set((await ingest.states("tx-1", "tx-2", "tx-3")).values()) == {"enriched"}

    async def test_an_enrichment_between_reading_and_writing_a_changed_row_survives(self, ingest: Ingest):
        await ingest.sync(ingest.rows(1))
        # The enricher writes after the writer read the stored copy and before its batch lands.
        transactions = Meanwhile(
            ingest.stores.transactions, read_many=lambda: enricher_finishes(ingest.stores, "tx-1")
        )
        racing = TransactionWriter(transactions)
        changes = await racing.write(ingest.rows(1, updated=T0 + timedelta(hours=1), TotalScanCount=2))
        transactions.assert_interleaved()
        stored = await ingest.read("tx-1")
        assert changes.updated == 1
        assert (stored["TotalScanCount"], stored["enrichmentState"], stored.get("stripeChargeId")) == (
            2,
            "enriched",
            "ch_old",
        )

    async def test_the_fallback_write_keeps_what_the_enricher_wrote_after_its_own_read(self, ingest: Ingest):
        await ingest.sync(ingest.rows(1))
        # The enricher writes twice: once before the batch (so the batch fails and the writer
        # falls back to reading and replacing one document), once between that read and replace.
        transactions = Meanwhile(
            ingest.stores.transactions,
            read_many=lambda: enricher_finishes(ingest.stores, "tx-1"),
            read=lambda: payout_paid(ingest.stores, "tx-1"),
        )
        await TransactionWriter(transactions).write(
            ingest.rows(1, updated=T0 + timedelta(hours=1), TotalScanCount=2)
        )
        transactions.assert_interleaved()
        stored = await ingest.read("tx-1")
        assert (stored["TotalScanCount"], stored["enrichmentState"], stored.get("stripePayoutStatus")) == (
            2,
            "enriched",
            "paid",
        )

    async def test_a_payment_enriched_while_a_requeue_runs_stays_enriched(self, ingest: Ingest):
        await ingest.sync(ingest.rows(1))
        await ingest.stores.transactions.patch(
            "tx-1",
            partition_key=ingest.stores.event,
            operations=[{"op": "set", "path": "/enrichmentState", "value": "unresolved"}],
        )
        published = len(ingest.requests())
        # The enricher's own retry traces the payment after the requeue found it unresolved.
        transactions = Meanwhile(
            ingest.stores.transactions, find=lambda: enricher_finishes(ingest.stores, "tx-1")
        )
        racing = EnrichmentQueue(
            publisher=ingest.bus.publisher(queue=QUEUE), writer=ingest.writer, transactions=transactions
        )
        await racing.requeue(state="unresolved")
        transactions.assert_interleaved()
        stored = await ingest.read("tx-1")
        assert (stored["enrichmentState"], stored.get("enrichmentRequest")) == ("enriched", None)
        mine = [m for m in ingest.requests()[published:] if m.event_id == ingest.stores.event]
        assert mine == []

    async def test_a_restamped_row_is_unchanged_and_not_written(self, ingest: Ingest):
        await ingest.sync(ingest.rows(1, 2))
        before = {tx: (await ingest.read(tx))["_etag"] for tx in ("tx-1", "tx-2")}
        published = len(ingest.requests())

        changes = await ingest.sync(ingest.rows(1, 2, updated=T0 + timedelta(days=1)))

        assert (changes.created, changes.updated, changes.unchanged, changes.pending) == (0, 0, 2, [])
        assert {tx: (await ingest.read(tx))["_etag"] for tx in before} == before
        assert len(ingest.requests()) == published

    async def test_the_same_order_from_a_second_file_is_unchanged_and_not_written(self, ingest: Ingest):
        row = ExportRow.parse(
            {
                "EventName": "Summer Tour: Berlin",
                "ticketId": "TK-1",
                "TotalTickets": 2,
                "TotalAmount": 50,
                "PurchaseDate": "2026-05-01T19:30:00Z",
                "PaymentID": "pi_file1",
            }
        )

        def from_file(name: str) -> TicketTransaction:
            return TicketTransaction.from_export_row(row, event_id=ingest.stores.event, source=f"file:{name}")

        first = await ingest.sync([from_file("january.csv")])
        stored = await ingest.read(from_file("january.csv").id)
        again = await ingest.sync([from_file("january-corrected.csv")])
        assert (first.created, again.unchanged, again.updated) == (1, 1, 0)
        assert (await ingest.read(stored["id"]))["_etag"] == stored["_etag"]
        assert len(ingest.requests()) == 1


class ReplicaRaces:
    """Two ingest runs (replicas, or a sync beside an import) writing the same state document."""

    @pytest.fixture
    def lease_name(self) -> str:
        return f"sync:race-{uuid.uuid4().hex[:10]}"

    @staticmethod
    def replica(
        container: DocumentContainer, name: str, holder: str, clock: Callable[[], float]
    ) -> SyncLease:
        return SyncLease(container, name=name, holder=holder, duration_seconds=30, clock=clock)

    async def test_two_replicas_taking_an_expired_lease_at_once_one_wins(self, stores: Stores, lease_name):
        clock = Clock()
        assert await self.replica(stores.state, lease_name, "a", clock).try_acquire()
        clock.now += 31  # a died: its lease expired
        gate = ReadsMeet(stores.state, parties=2)
        b, c = (self.replica(gate, lease_name, holder, clock) for holder in ("b", "c"))
        won = await both(b.try_acquire(), c.try_acquire())
        assert sorted(won) == [False, True]
        winner = "b" if won[0] else "c"
        assert (await b.state()).holder == winner

    async def test_two_replicas_creating_the_lease_at_once_one_wins(self, stores: Stores, lease_name):
        clock = Clock()
        gate = ReadsMeet(stores.state, parties=2)
        b, c = (self.replica(gate, lease_name, holder, clock) for holder in ("b", "c"))
        won = await both(b.try_acquire(), c.try_acquire())
        assert sorted(won) == [False, True]
        assert (await b.state()).holder == ("b" if won[0] else "c")

    async def test_a_takeover_whose_etag_went_stale_loses(self, stores: Stores, lease_name):
        clock = Clock()
        assert await self.replica(stores.state, lease_name, "a", clock).try_acquire()
        clock.now += 31
        c = self.replica(stores.state, lease_name, "c", clock)
        # b reads the expired lease; before b replaces it, c takes it over.
        state = Meanwhile(stores.state, read=c.try_acquire)
        b = self.replica(state, lease_name, "b", clock)
        assert not await b.try_acquire()
        state.assert_interleaved()
        assert (await c.state()).holder == "c"
        await c.renew()  # c still holds it: nobody replaced its lease

    async def test_a_late_checkpoint_never_moves_it_backwards(self, stores: Stores, lease_name):
        source = lease_name
        checkpoints = CheckpointStore(stores.state)
        await checkpoints.save(SyncCheckpoint(source=source, updated_until=T0))
        newer = SyncCheckpoint(source=source, updated_until=T0 + timedelta(hours=2))
        # A replica that lost its lease saves an older position; the new holder's save lands
        # between the late one's read and its replace.
        state = Meanwhile(stores.state, read=lambda: checkpoints.save(newer))
        await CheckpointStore(state).save(
            SyncCheckpoint(source=source, updated_until=T0 + timedelta(hours=1))
        )
        state.assert_interleaved()
        assert (await checkpoints.load(source)).updated_until == newer.updated_until

    async def test_an_event_marked_while_the_backlog_is_trimmed_stays_marked(
        self, stores: Stores, lease_name
    ):
        refreshed, changed = f"{lease_name}-refreshed", f"{lease_name}-changed"
        backlog = CatalogBacklog(stores.state)
        await backlog.add({refreshed})
        # A sync marks an event between the refresher's read of the backlog and its write.
        state = Meanwhile(stores.state, read=lambda: backlog.add({changed}))
        await CatalogBacklog(state).remove({refreshed})
        state.assert_interleaved()
        pending = await backlog.pending()
        assert (changed in pending, refreshed in pending) == (True, False)


class Clock:
    """The replicas' shared clock (epoch seconds)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def both(first: Awaitable[bool], second: Awaitable[bool]) -> list[bool]:
    """Run two takeovers concurrently; a replica that never reads would leave the other at the gate."""
    async with asyncio.timeout(30):
        return list(await asyncio.gather(first, second))


class ReadsMeet:
    """A container whose first ``parties`` reads all return only once every one of them has read.

    Each of those readers then holds the same ETag before any of them writes: the race two
    replicas run when they look at the lease at the same moment. Later reads pass through.
    """

    def __init__(self, inner: DocumentContainer, *, parties: int) -> None:
        self._inner = inner
        self._readers_left = parties
        self._all_read = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(self, document_id: str, *, partition_key: Any) -> Document:
        if self._all_read.is_set():
            return await self._inner.read(document_id, partition_key=partition_key)
        try:
            document = await self._inner.read(document_id, partition_key=partition_key)
        except DocumentNotFoundError:
            await self._meet()
            raise
        await self._meet()
        return document

    async def _meet(self) -> None:
        self._readers_left -= 1
        if self._readers_left == 0:
            self._all_read.set()
        await self._all_read.wait()


class Meanwhile:
    """A container on which another writer acts once, right after the first call of a read method.

    ``Meanwhile(container, read_many=step)`` runs ``step`` when the first ``read_many`` has its
    answer and before the caller sees it: whatever the caller writes next rests on a stale read.
    """

    def __init__(self, inner: DocumentContainer, **after: Callable[[], Awaitable[object]]) -> None:
        self._inner = inner
        self._after = after

    def assert_interleaved(self) -> None:
        """Fail when a step never ran: the code under test no longer reads that way, so no race happened."""
        assert not self._after, f"the race was never run: nothing called {sorted(self._after)}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(self, document_id: str, *, partition_key: Any) -> Document:
        document = await self._inner.read(document_id, partition_key=partition_key)
        await self._then("read")
        return document

    async def read_many(self, ids: Sequence[str], *, partition_key: Any) -> dict[str, Document]:
        found = await self._inner.read_many(ids, partition_key=partition_key)
        await self._then("read_many")
        return found

    async def find(self, where: Mapping[str, Any], **options: Any) -> AsyncIterator[Document]:
        async for document in self._inner.find(where, **options):
            await self._then("find")
            yield document

    async def _then(self, method: str) -> None:
        if (step := self._after.pop(method, None)) is not None:
            await step()
