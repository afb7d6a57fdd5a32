"""What the enricher keeps in Cosmos DB so that most payments cost no Stripe call at all.

One document per fact, every lookup a point read. Keys say what they answer:

- ``account:<acct>`` / ``account:platform``: an account's display name and payout schedule;
- ``accounts``: the connected accounts the platform has (ids);
- ``payment:<ch_|pi_|py_>``: the charge behind a payment id, trimmed to what the enricher reads,
  and the account that owns it (None: the platform);
- ``transfer:<tr_>``: where a transfer went (account, destination payment), from the connected
  account's listing; ``transfer-of:<ch_>``: the transfer a platform charge paid for;
- ``txn:<txn_>``: the payout that carried a balance transaction; ``payout:<po_>``: that payout
  (its state, and once listed the balance transactions it carried);
- ``bank:<ba_>``: a bank account's name and last 4;
- ``cursor:<charges|payouts|accounts>:<account>``: how far an index is built (created cursor)
  and when its last refresh started (what it can vouch for).

The kinds a listing writes by the thousand (``FACT_KINDS``: payments, transfers, payout links) live
in the ``stripe-facts`` container, where each key hashes to one of ``FACT_PARTITIONS`` partitions:
a listed page's documents go in transactional batches per partition (shared with the pages of
the other listings running at once) instead of one request each, and a point read derives the
partition from the key. The rest (accounts, payouts, banks, cursors: tens of documents) stay in
``stripe-index``, partitioned by ``/id``.

Stripe's facts only ever get added or move forward, so writes are plain upserts of what Stripe
said; cursors and payout states only move forward (read-modify-write under the ETag: a slower
reader holding an older payout state must not overwrite a newer one).

Documents of the kinds in ``SETTLED_KINDS`` never change once written (a charge's owner, a
transfer's destination, a bank account, the payout that carried a balance transaction), or change
only by this index's own writes (an account's name, rewritten by each account listing), so each
replica keeps the ones it read or wrote in memory: a payment costs its point reads of payouts, not
of every fact behind it, and a listing does not rewrite a settled document it already holds.
Reads of the moving kinds (payouts, cursors) that are asked for while the same read is in flight
share it; a write of that key makes later callers read again. A replica keeps the refresh marks
(cursors) it read or wrote, so its next refresh starts from memory and moves the mark under the
ETag it holds: one write per refresh, re-read only when another replica moved it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enricher.deposits import payout_status_is_behind
from enricher.routing import object_id
from otcommon.schemas import format_timestamp, parse_timestamp
from otcommon.store import (
    CoalescingContainer,
    DocumentExistsError,
    DocumentNotFoundError,
    read_modify_write,
)
from otcommon.stripe_facts import PARTITION_FIELD, fact_partition

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator
    from datetime import datetime

    from otcommon.store import Document, DocumentContainer

PLATFORM = "platform"
"""How keys name the platform's own account."""

_CHARGE_FIELDS = (
    "id",
    "payment_intent",
    "created",
    "currency",
    "amount",
    "on_behalf_of",
    "transfer",
    "application_fee_amount",
    "transfer_group",
)
_BALANCE_FIELDS = ("id", "amount", "fee", "net", "currency", "available_on", "created")

SETTLED_KINDS = frozenset({"account", "payment", "transfer", "transfer-of", "bank", "txn"})
"""Key kinds kept in memory once read or written (payouts and cursors move: never).

A balance transaction stays in the payout that carried it, even when that payout fails (Stripe
returns the money with a new balance transaction of its own), so its ``txn:`` link is settled.
"""

FACT_KINDS = frozenset({"payment", "transfer", "transfer-of", "txn"})
"""Key kinds kept in the ``stripe-facts`` container (a listed page writes them in batches)."""

WRITE_CONCURRENCY = 32
"""``stripe-index`` writes in flight at once per replica (a listed page's ``stripe-facts`` documents
go in the coalescing container's rounds: a round's batches are its requests in flight)."""

FACTS_LINGER_SECONDS = 0.02
"""How long reads and writes of ``stripe-facts`` wait to go together (the coalescing container's
linger): the listings running at once share batches, and the reads of payments resolved together
share a ``read_many`` per partition (``OT_ENRICHER_COALESCE_LINGER_SECONDS``)."""

PAYOUT_MEMO_SECONDS = 5.0
"""How long a replica reuses a payout document it read or wrote before reading it again.

A payout moves (another replica may apply its change meanwhile), so it is not kept like a settled
fact; but a cold start enriches thousands of payments of a few dozen payouts within seconds, and a
read per payment was a third of its Cosmos DB requests. A payout change applied on another replica
reaches this one's enrichments at most this much later, beside the up to
``OT_ENRICHER_PAYOUT_FRESHNESS_SECONDS`` an open payout's state may lag Stripe's anyway.
"""

MEMORY_ENTRIES = 50_000
"""Settled documents kept per replica (least recently used go first): some tens of MB."""


async def all_of(work: Iterable[Awaitable[object]]) -> None:
    """Run every awaitable at once; when some fail, raise the first failure once all have ended.

    Waiting for all keeps no write running unobserved behind a failure the caller handles.
    """
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def key_kind(key: str) -> str:
    """The kind a key names (``payment`` for ``payment:pi_1``)."""
    return key.split(":", 1)[0]


def account_key(account: str | None) -> str:
    """The key part naming an account (``platform`` for the platform's own objects)."""
    return account or PLATFORM


def trimmed_charge(charge: dict[str, Any]) -> dict[str, Any]:
    """The fields of a charge the enricher reads, references reduced to ids."""
    trimmed = {name: charge.get(name) for name in _CHARGE_FIELDS}
    for reference in ("payment_intent", "on_behalf_of", "transfer"):
        trimmed[reference] = object_id(charge.get(reference))
    transfer_data = charge.get("transfer_data")
    destination = object_id(transfer_data.get("destination")) if isinstance(transfer_data, dict) else None
    trimmed["transfer_data"] = {"destination": destination} if destination else None
    trimmed["source_transfer"] = object_id(charge.get("source_transfer"))
    balance = charge.get("balance_transaction")
    if isinstance(balance, dict):
        trimmed["balance_transaction"] = {name: balance.get(name) for name in _BALANCE_FIELDS}
    else:
        trimmed["balance_transaction"] = {"id": balance} if isinstance(balance, str) else None
    return trimmed


def payment_documents(trimmed: dict[str, Any], *, account: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The ``payment:`` documents of a trimmed charge: under its own id and its PaymentIntent's."""
    fields = {"kind": "payment", "account": account, "charge": trimmed}
    return [
        (f"payment:{payment_id}", fields)
        for payment_id in filter(None, (trimmed["id"], trimmed["payment_intent"]))
    ]


@dataclass(frozen=True, slots=True)
class IndexedPayment:
    """A payment id found in an account's charge listing."""

    account: str | None
    charge: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RefreshMark:
    """How far one index of one account is built, and when its last refresh started."""

    created_cursor: int | None
    started_at: datetime | None


class _Memo:
    """Documents kept for a few seconds after they were read or written (payouts)."""

    def __init__(self, *, seconds: float, monotonic: Callable[[], float]) -> None:
        self._seconds = seconds
        self._monotonic = monotonic
        self._kept: OrderedDict[str, tuple[float, Document]] = OrderedDict()
        self._versions: dict[str, int] = {}

    def get(self, key: str) -> Document | None:
        kept = self._kept.get(key)
        if kept is None or self._monotonic() - kept[0] >= self._seconds:
            return None
        return kept[1]

    def version(self, key: str) -> int:
        """Moves with each write of the key: a read started before a write must not replace it."""
        return self._versions.get(key, 0)

    def put(self, key: str, document: Document, *, unless_written_since: int | None = None) -> None:
        if unless_written_since is not None:
            if self.version(key) != unless_written_since:
                return
        else:
            self._versions[key] = self.version(key) + 1
        now = self._monotonic()
        self._kept[key] = (now, document)
        self._kept.move_to_end(key)
        while self._kept and now - next(iter(self._kept.values()))[0] >= self._seconds:
            self._kept.popitem(last=False)


class StripeIndex:
    """Typed reads and writes of the index documents."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        facts: DocumentContainer,
        memory_entries: int = MEMORY_ENTRIES,
        write_concurrency: int = WRITE_CONCURRENCY,
        payout_memo_seconds: float = PAYOUT_MEMO_SECONDS,
        facts_linger_seconds: float = FACTS_LINGER_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._container = container
        # Payments resolved together read their facts together: one query per partition, not a
        # point read each (a platform charge's ``transfer-of:`` read finds nothing, and is asked by
        # every platform charge of a listed page at once).
        # Its upserts go the same way: the pages of the listings running at once are written in
        # batches of up to 100 per partition, not a batch per page and partition.
        self._facts = CoalescingContainer(facts, batch_upserts=True, linger_seconds=facts_linger_seconds)
        self._payouts = _Memo(seconds=payout_memo_seconds, monotonic=monotonic)
        self._memory: OrderedDict[str, Document] = OrderedDict()
        self._memory_entries = memory_entries
        self._writes = asyncio.Semaphore(write_concurrency)
        self._reads: dict[str, asyncio.Future[Document | None]] = {}
        self._marks: dict[str, Document] = {}
        # Marks this replica read and found missing (a cold start): not read again until written.
        self._missing_marks: set[str] = set()
        self._watched: dict[str, set[asyncio.Future[None]]] = {}

    async def get(self, key: str) -> Document | None:
        """The document at a key, or None."""
        remembered = self._memory.get(key)
        if remembered is not None:
            self._memory.move_to_end(key)
            return remembered
        if (recent := self._payouts.get(key)) is not None:
            return recent
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(self._read(key))
            self._reads[key] = read
            read.add_done_callback(lambda done: self._forget_read(key, done))
        # One caller being cancelled (its message abandoned) must not cancel the others' read.
        return await asyncio.shield(read)

    async def _read(self, key: str) -> Document | None:
        version = self._payouts.version(key)
        try:
            if key_kind(key) in FACT_KINDS:
                found = await self._facts.read(key, partition_key=fact_partition(key))
            else:
                found = await self._container.read(key, partition_key=key)
        except DocumentNotFoundError:
            return None  # not remembered: it may be written by the next listing
        self._remember(key, found)
        if key_kind(key) == "payout":
            self._payouts.put(key, found, unless_written_since=version)
        return found

    def _forget_read(self, key: str, read: asyncio.Future[Document | None]) -> None:
        if self._reads.get(key) is read:
            del self._reads[key]

    async def put(self, key: str, **fields: Any) -> None:
        """Record a fact (replacing what the key held); a settled fact already held is not rewritten."""
        await self.put_many([(key, fields)])

    async def put_many(self, documents: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Record several facts at once: one batch per ``stripe-facts`` partition, the rest one by one.

        At most ``write_concurrency`` requests are in flight; facts this replica holds unchanged are
        not written again (a listing's overlap lists some charges again).
        """
        wanted: dict[str, Document] = {}
        for key, fields in documents:
            document = {"id": key, **fields}
            if key_kind(key) in FACT_KINDS:
                document[PARTITION_FIELD] = fact_partition(key)
            if not self._holds(document):
                wanted[key] = document
        facts = [document for document in wanted.values() if PARTITION_FIELD in document]
        work = [self._upsert(document) for document in wanted.values() if PARTITION_FIELD not in document]
        if facts:
            work.append(self._upsert_facts(facts))
        await all_of(work)

    def _holds(self, document: Document) -> bool:
        held = self._memory.get(document["id"])
        return held is not None and {k: v for k, v in held.items() if not k.startswith("_")} == document

    async def _upsert(self, document: Document) -> None:
        async with self._writes:
            await self._container.upsert(document)
        self._stored(document)

    async def _upsert_facts(self, documents: list[Document]) -> None:
        # Batched per partition with the facts other listings write meanwhile (the coalescing
        # container's rounds): a round's batches are its requests in flight.
        await self._facts.upsert_many(documents)
        for document in documents:
            self._stored(document)

    def _stored(self, document: Document) -> None:
        self._written(document["id"])
        self._remember(document["id"], document)
        for seen in self._watched.pop(document["id"], ()):
            if not seen.done():
                seen.set_result(None)

    @contextlib.contextmanager
    def watching(self, key: str) -> Iterator[asyncio.Future[None]]:
        """A future done once this replica writes ``key`` (a listing in flight indexing it)."""
        seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watched.setdefault(key, set()).add(seen)
        try:
            yield seen
        finally:
            watchers = self._watched.get(key)
            if watchers is not None:
                watchers.discard(seen)
                if not watchers:
                    del self._watched[key]

    def _written(self, key: str) -> None:
        # A read in flight may have started before this write: callers from now on read again.
        self._reads.pop(key, None)

    def _remember(self, key: str, document: Document) -> None:
        if key_kind(key) not in SETTLED_KINDS:
            return
        self._memory[key] = document
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)

    async def payment(self, payment_id: str) -> IndexedPayment | None:
        """The indexed charge behind a ``ch_``/``pi_``/``py_`` id."""
        found = await self.get(f"payment:{payment_id}")
        return None if found is None else IndexedPayment(account=found["account"], charge=found["charge"])

    async def put_charge(self, charge: dict[str, Any], *, account: str | None) -> dict[str, Any]:
        """Index a listed charge under its own id and its PaymentIntent's."""
        trimmed = trimmed_charge(charge)
        await self.put_many(payment_documents(trimmed, account=account))
        return trimmed

    async def put_payout(self, payout_id: str, **fields: Any) -> Document:
        """Record a payout's state unless the stored state is further along; the stored document."""
        key = f"payout:{payout_id}"

        def forward(current: Document) -> Document | None:
            if payout_status_is_behind(fields.get("status"), than=current.get("status")):
                return None
            kept = {name: value for name, value in current.items() if not name.startswith("_")}
            moved = {**kept, **fields}
            return None if moved == kept else moved

        outcome = await read_modify_write(
            self._container,
            key,
            partition_key=key,
            mutate=forward,
            create=lambda: {"id": key, "contentsIndexed": False, **fields},
        )
        self._written(key)
        self._payouts.put(key, outcome.document)
        return outcome.document

    async def put_payout_contents(self, payout_id: str, balance_transactions: list[str]) -> None:
        """Record the balance transactions an (indexed) payout carried."""
        key = f"payout:{payout_id}"

        def listed(current: Document) -> Document:
            return {**current, "contentsIndexed": True, "balanceTransactions": balance_transactions}

        outcome = await read_modify_write(self._container, key, partition_key=key, mutate=listed)
        self._written(key)
        self._payouts.put(key, outcome.document)

    async def mark(self, index: str, account: str | None, *, stored: bool = False) -> RefreshMark:
        """Where an account's index stands: as this replica last read or moved it, or (``stored``) read now.

        A mark held here may be behind one another replica moved since; a refresh starting from it
        lists some objects again, which rewrites what the index holds already.
        """
        key = f"cursor:{index}:{account_key(account)}"
        found = None if stored else self._marks.get(key)
        if found is None and (stored or key not in self._missing_marks):
            found = await self.get(key)
            if found is not None:
                self._marks[key] = found
                self._missing_marks.discard(key)
            else:
                self._missing_marks.add(key)
        if found is None:
            return RefreshMark(created_cursor=None, started_at=None)
        started = found.get("startedAt")
        return RefreshMark(
            created_cursor=found.get("createdCursor"),
            started_at=parse_timestamp(started) if started else None,
        )

    async def advance(
        self, index: str, account: str | None, *, created_cursor: int | None, started_at: datetime
    ) -> None:
        """Move a refresh mark forward (never back: a slower concurrent refresh may finish last)."""
        key = f"cursor:{index}:{account_key(account)}"

        def forward(current: Document) -> Document | None:
            cursor = max(filter(None, (current.get("createdCursor"), created_cursor)), default=None)
            started = (
                max(parse_timestamp(current["startedAt"]), started_at)
                if current.get("startedAt")
                else started_at
            )
            moved = {**current, "createdCursor": cursor, "startedAt": format_timestamp(started)}
            return None if moved == current else moved

        def first() -> Document:
            return {
                "id": key,
                "kind": "cursor",
                "createdCursor": created_cursor,
                "startedAt": format_timestamp(started_at),
            }

        written = None
        if key in self._missing_marks and key not in self._marks:
            # Found missing when this refresh began: created without reading again.
            with contextlib.suppress(DocumentExistsError):  # another replica created it since
                written = await self._container.create(first())
        if written is None:
            outcome = await read_modify_write(
                self._container,
                key,
                partition_key=key,
                mutate=forward,
                create=first,
                current=self._marks.get(key),
            )
            written = outcome.document
        self._missing_marks.discard(key)
        self._written(key)
        self._marks[key] = written
