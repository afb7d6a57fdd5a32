"""What the enricher keeps in Cosmos DB so that most payments cost no Stripe call at all.

One document per fact in the ``stripe-index`` container (partitioned by ``/id``, so every
lookup is a point read). Keys say what they answer:

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

Stripe's facts only ever get added or move forward, so writes are plain upserts of what Stripe
said; cursors and payout states only move forward (read-modify-write under the ETag: a slower
reader holding an older payout state must not overwrite a newer one).

Documents of the kinds in ``SETTLED_KINDS`` never change once written (a charge's owner, a
transfer's destination, a bank account), or change only by this index's own writes (an account's
name, rewritten by each account listing), so each replica keeps the ones it read or wrote in
memory: a payment costs its point reads of payouts and cursors, not of every fact behind it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enricher.deposits import payout_status_is_behind
from enricher.routing import object_id
from otcommon.schemas import format_timestamp, parse_timestamp
from otcommon.store import DocumentNotFoundError, read_modify_write

if TYPE_CHECKING:
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

SETTLED_KINDS = frozenset({"account", "payment", "transfer", "transfer-of", "bank"})
"""Key kinds kept in memory once read or written (payouts, payout links and cursors move: never)."""

MEMORY_ENTRIES = 50_000
"""Settled documents kept per replica (least recently used go first): some tens of MB."""


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


class StripeIndex:
    """Typed reads and writes of the index documents."""

    def __init__(self, container: DocumentContainer, *, memory_entries: int = MEMORY_ENTRIES) -> None:
        self._container = container
        self._memory: OrderedDict[str, Document] = OrderedDict()
        self._memory_entries = memory_entries

    async def get(self, key: str) -> Document | None:
        """The document at a key, or None."""
        remembered = self._memory.get(key)
        if remembered is not None:
            self._memory.move_to_end(key)
            return remembered
        try:
            found = await self._container.read(key, partition_key=key)
        except DocumentNotFoundError:
            return None  # not remembered: it may be written by the next listing
        self._remember(key, found)
        return found

    async def put(self, key: str, **fields: Any) -> None:
        """Record a fact (replacing what the key held)."""
        document = {"id": key, **fields}
        await self._container.upsert(document)
        self._remember(key, document)

    def _remember(self, key: str, document: Document) -> None:
        if key.split(":", 1)[0] not in SETTLED_KINDS:
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
        for payment_id in filter(None, (trimmed["id"], trimmed["payment_intent"])):
            await self.put(f"payment:{payment_id}", kind="payment", account=account, charge=trimmed)
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
        return outcome.document

    async def put_payout_contents(self, payout_id: str, balance_transactions: list[str]) -> None:
        """Record the balance transactions an (indexed) payout carried."""
        key = f"payout:{payout_id}"

        def listed(current: Document) -> Document:
            return {**current, "contentsIndexed": True, "balanceTransactions": balance_transactions}

        await read_modify_write(self._container, key, partition_key=key, mutate=listed)

    async def mark(self, index: str, account: str | None) -> RefreshMark:
        """Where an account's index stands."""
        found = await self.get(f"cursor:{index}:{account_key(account)}")
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

        await read_modify_write(
            self._container,
            key,
            partition_key=key,
            mutate=forward,
            create=lambda: {
                "id": key,
                "kind": "cursor",
                "createdCursor": created_cursor,
                "startedAt": format_timestamp(started_at),
            },
        )
