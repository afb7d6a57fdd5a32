"""Applying refund and dispute events to transactions: shared tests, run on the fake and on Cosmos DB."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from stripe_fixtures import event, fixture

from otcommon.bus import CorrelationFilter, InMemoryBus, Subscription, Topic
from otcommon.messages import StripeTransferCreated, decode_message
from otcommon.payment_transactions import TransactionRef, payment_transactions_document
from otcommon.served import served_is_disputed, served_is_refunded
from webhooks.applier import NoMatchingTransactionError, StripeFactsApplier
from webhooks.models import StripeEvent
from webhooks.states import EventState
from webhooks.transactions import Fallback, TransactionFacts

if TYPE_CHECKING:
    from otcommon.store import DocumentContainer

TOPIC = "transaction-changes"
PAYOUT_QUEUE = "stripe-events-queue"
STAMP = "stripeFactsPaymentId"
REFUND_SUMMARY = {"stripeRefundedAmount", "stripeRefundStatus", "stripeRefundStateAt", STAMP}
REFUND_FIELDS = {"stripeRefunds", *REFUND_SUMMARY}
CHARGE_REFUND_FIELDS = {"stripeChargeRefunds", *REFUND_SUMMARY}
DISPUTE_FIELDS = {
    "stripeDisputes",
    "stripeDisputeStatus",
    "stripeDisputeReason",
    "stripeDisputeStateAt",
    STAMP,
}
SYSTEM_FIELDS = {"_etag", "_ts", "_rid", "_self", "_attachments", "_lsn"}
T0 = 1_700_000_000


@dataclass
class Stores:
    transactions: DocumentContainer
    index: DocumentContainer
    """The enricher's ``stripe-facts`` container (its ``transactions-of:`` documents)."""


class _Wrapping:
    """A container passing every call to ``inner``, except what a subclass overrides."""

    def __init__(self, inner: DocumentContainer) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def partition_key_path(self) -> str:
        return self._inner.partition_key_path


class SendCounter:
    """A publisher counting the sends it passes on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.sends = 0

    async def publish(self, envelopes: Any) -> None:
        self.sends += 1
        await self._inner.publish(envelopes)

    async def close(self) -> None:
        await self._inner.close()


class NoQueries(_Wrapping):
    """A container that refuses queries: the lookup went by point reads alone."""

    def query(self, query: str, **_options):
        raise AssertionError(f"a query was made: {query}")


class Counted(_Wrapping):
    """A container counting its point reads, its queries and its write requests."""

    def __init__(self, inner: DocumentContainer) -> None:
        super().__init__(inner)
        self.reads = 0
        self.queries = 0
        self.writes = 0

    async def read(self, document_id, **options):
        self.reads += 1
        return await self._inner.read(document_id, **options)

    async def patch(self, document_id, **options):
        self.writes += 1
        return await self._inner.patch(document_id, **options)

    async def replace(self, document, **options):
        self.writes += 1
        return await self._inner.replace(document, **options)

    async def write_batch(self, writes, **options):
        self.writes += 1
        return await self._inner.write_batch(writes, **options)

    def query(self, query: str, **options):
        self.queries += 1
        return self._inner.query(query, **options)


class Interleaved(_Wrapping):
    """A container that lets another writer in just before its first write (a lost race, on demand)."""

    def __init__(self, inner: DocumentContainer, before_first_patch) -> None:
        super().__init__(inner)
        self._before = before_first_patch

    async def _first(self) -> None:
        if self._before is not None:
            before, self._before = self._before, None
            await before()

    async def patch(self, document_id, **kwargs):
        await self._first()
        return await self._inner.patch(document_id, **kwargs)

    async def write_batch(self, writes, **kwargs):
        await self._first()
        return await self._inner.write_batch(writes, **kwargs)


def stripe_event(event_type: str, obj: dict, *, created: int, n: int = 1) -> StripeEvent:
    return StripeEvent.parse(json.dumps(event(event_type, obj, n=n, created=created)))


class ApplyingContract:
    @pytest.fixture
    def ids(self) -> dict[str, str]:
        tag = uuid.uuid4().hex[:10]
        return {"pi": f"pi_{tag}", "ch": f"ch_{tag}", "event": f"ev-{tag}", "tx": f"tx-{tag}"}

    @pytest.fixture
    def bus(self) -> InMemoryBus:
        changes = Subscription(name="all", rules=(CorrelationFilter(subject="TransactionChanged"),))
        # Like the real topic: no duplicate detection, so a repeated announcement is seen.
        return InMemoryBus(
            topics=[Topic(name=TOPIC, subscriptions=(changes,))], duplicate_detection_window_seconds=None
        )

    @pytest.fixture
    async def stored(self, stores: Stores, ids) -> dict:
        document = {
            "id": ids["tx"],
            "eventId": ids["event"],
            "PaymentID": ids["pi"],
            "TotalAmount": 40.0,
            "IsRefunded": False,
            "IsDisputed": False,
            "depositStatus": "paid",
        }
        created = await stores.transactions.create(document)
        # As the enricher lists it (under the PaymentID and the charge) before it writes its ids.
        await self.index(stores, ids["pi"], ids["ch"], refs=[TransactionRef(ids["event"], ids["tx"])])
        return created

    async def index(self, stores: Stores, *stripe_ids: str, refs: list[TransactionRef]) -> None:
        for stripe_id in stripe_ids:
            await stores.index.upsert(payment_transactions_document(stripe_id, refs))

    @pytest.fixture(autouse=True)
    def _with_the_index(self, stores: Stores) -> None:
        # Every applier reads the enricher's index, as the service does.
        self.index_container = stores.index

    def facts(self, transactions: DocumentContainer) -> TransactionFacts:
        return TransactionFacts(transactions, index=self.index_container)

    def applier(
        self, transactions: DocumentContainer | TransactionFacts, bus: InMemoryBus
    ) -> StripeFactsApplier:
        facts = transactions if isinstance(transactions, TransactionFacts) else self.facts(transactions)
        return StripeFactsApplier(
            transactions=facts,
            changes=bus.topic_publisher(topic=TOPIC),
            payouts=bus.publisher(queue=PAYOUT_QUEUE),
        )

    async def current(self, stores: Stores, ids) -> dict:
        return await stores.transactions.read(ids["tx"], partition_key=ids["event"])

    def announced(self, bus: InMemoryBus) -> list:
        return [decode_message(raw) for raw in bus.active_messages(topic=TOPIC, subscription="all")]

    def refund(self, ids, **fields) -> dict:
        return fixture("refund", charge=ids["ch"], payment_intent=ids["pi"], **fields)

    def dispute(self, ids, **fields) -> dict:
        return fixture("dispute", charge=ids["ch"], payment_intent=ids["pi"], **fields)

    @pytest.mark.usefixtures("stored")
    async def test_a_partial_refund_sets_the_refund_fields_and_nothing_else(self, stores, ids, bus):
        applied = await self.applier(stores.transactions, bus).apply(
            stripe_event("refund.created", self.refund(ids, amount=1500, status="succeeded"), created=T0)
        )
        assert applied.state is EventState.APPLIED
        after = await self.current(stores, ids)
        assert after["stripeRefundedAmount"] == 15.0
        assert after["stripeRefundStatus"] == "partial"
        assert after["stripeRefundStateAt"] == "2023-11-14T22:13:20+00:00"
        # The source's and the enricher's fields are theirs.
        assert (after["IsRefunded"], after["TotalAmount"], after["depositStatus"]) == (False, 40.0, "paid")
        [message] = self.announced(bus)
        assert message.message.transaction_id == ids["tx"]
        assert message.message.change.value == "refunded"
        assert "stripeRefundedAmount" in message.message.changed_fields

    @pytest.mark.usefixtures("stored")
    async def test_a_full_refund_of_the_charge_is_full(self, stores, ids, bus):
        charge = fixture("charge", id=ids["ch"], payment_intent=ids["pi"], amount=4000, amount_refunded=4000)
        await self.applier(stores.transactions, bus).apply(
            stripe_event("charge.refunded", charge, created=T0)
        )
        after = await self.current(stores, ids)
        assert (after["stripeRefundedAmount"], after["stripeRefundStatus"]) == (40.0, "full")

    @pytest.mark.usefixtures("stored")
    async def test_an_older_refund_event_after_a_newer_one_changes_nothing(self, stores, ids, bus):
        applier = self.applier(stores.transactions, bus)
        await applier.apply(
            stripe_event("refund.updated", self.refund(ids, status="failed"), created=T0 + 5, n=2)
        )
        await applier.apply(
            stripe_event("refund.created", self.refund(ids, status="succeeded", amount=900), created=T0, n=1)
        )
        after = await self.current(stores, ids)
        assert after["stripeRefundedAmount"] == 0.0
        assert after["stripeRefundStatus"] == "none"
        assert len(self.announced(bus)) == 1

    @pytest.mark.usefixtures("stored")
    async def test_a_dispute_closed_before_it_was_created_stays_closed(self, stores, ids, bus):
        applier = self.applier(stores.transactions, bus)
        closed = self.dispute(ids, status="lost", reason="fraudulent")
        opened = self.dispute(ids, status="needs_response", reason="fraudulent")
        await applier.apply(stripe_event("charge.dispute.closed", closed, created=T0 + 60, n=2))
        await applier.apply(stripe_event("charge.dispute.created", opened, created=T0, n=1))
        after = await self.current(stores, ids)
        assert (after["stripeDisputeStatus"], after["stripeDisputeReason"]) == ("lost", "fraudulent")
        assert after["IsDisputed"] is False  # the source's flag is the source's

    @pytest.mark.usefixtures("stored")
    async def test_within_one_second_the_later_status_wins(self, stores, ids, bus):
        applier = self.applier(stores.transactions, bus)
        await applier.apply(
            stripe_event("charge.dispute.closed", self.dispute(ids, status="won"), created=T0, n=2)
        )
        await applier.apply(
            stripe_event("charge.dispute.updated", self.dispute(ids, status="under_review"), created=T0, n=1)
        )
        assert (await self.current(stores, ids))["stripeDisputeStatus"] == "won"

    @pytest.mark.usefixtures("stored")
    async def test_the_same_event_again_changes_nothing_and_announces_with_the_same_id(
        self, stores, ids, bus
    ):
        applier = self.applier(stores.transactions, bus)
        refund = stripe_event("refund.created", self.refund(ids, amount=500), created=T0)
        await applier.apply(refund)
        before = await self.current(stores, ids)
        # A crash after the write and before the event was settled: the sweep applies it again.
        await applier.apply(refund)
        after = await self.current(stores, ids)
        assert after["_etag"] == before["_etag"]
        first, again = self.announced(bus)
        assert first.message_id == again.message_id

    async def test_found_by_the_enrichers_charge_id_when_the_payment_id_is_another(self, stores, ids, bus):
        document = {"id": ids["tx"], "eventId": ids["event"], "PaymentID": "pi_other", "TotalAmount": 40.0}
        await stores.transactions.create({**document, "stripeChargeId": ids["ch"]})
        refund = fixture("refund", charge=ids["ch"], payment_intent=None, amount=4000)
        await self.applier(stores.transactions, bus).apply(stripe_event("refund.created", refund, created=T0))
        assert (await self.current(stores, ids))["stripeRefundStatus"] == "full"

    async def test_an_event_for_an_unknown_payment_is_retried_not_dropped(self, stores, ids, bus):
        refund = stripe_event("refund.created", self.refund(ids), created=T0)
        with pytest.raises(NoMatchingTransactionError):
            await self.applier(stores.transactions, bus).apply(refund)

    @pytest.mark.usefixtures("stored")
    async def test_an_older_event_that_loses_the_race_to_a_newer_one_does_not_overwrite_it(
        self, stores, ids, bus
    ):
        newer = stripe_event("refund.updated", self.refund(ids, status="failed"), created=T0 + 5, n=2)
        older = stripe_event(
            "refund.created", self.refund(ids, status="succeeded", amount=900), created=T0, n=1
        )
        plain = self.applier(stores.transactions, bus)

        async def newer_lands_first() -> None:
            await plain.apply(newer)

        racing = self.applier(Interleaved(stores.transactions, newer_lands_first), bus)
        # The older event read the document before the newer one was written; its ETag is stale.
        await racing.apply(older)
        after = await self.current(stores, ids)
        assert after["stripeRefunds"][fixture("refund")["id"]]["status"] == "failed"
        assert after["stripeRefundStatus"] == "none"

    @pytest.mark.usefixtures("stored")
    async def test_a_refund_racing_the_enricher_keeps_the_enrichers_fields(self, stores, ids, bus):
        async def enricher_writes() -> None:
            current = await self.current(stores, ids)
            await stores.transactions.replace({**current, "depositStatus": "failed"}, etag=current["_etag"])

        racing = self.applier(Interleaved(stores.transactions, enricher_writes), bus)
        await racing.apply(stripe_event("refund.created", self.refund(ids, amount=500), created=T0))
        after = await self.current(stores, ids)
        assert (after["depositStatus"], after["stripeRefundedAmount"]) == ("failed", 5.0)

    @pytest.mark.usefixtures("stored")
    @pytest.mark.parametrize(
        "event_type", ["payout.paid", "payout.failed", "payout.reconciliation_completed"]
    )
    async def test_a_payout_goes_to_the_enricher_and_touches_no_transaction(
        self, stores, ids, bus, event_type
    ):
        before = await self.current(stores, ids)
        payout = fixture("payout", id="po_test1", status="paid", arrival_date=T0 + 86400)
        applied = await self.applier(stores.transactions, bus).apply(
            StripeEvent.parse(json.dumps(event(event_type, payout, created=T0, account="acct_org1")))
        )
        assert applied.state is EventState.APPLIED
        [forwarded] = [decode_message(raw) for raw in bus.active_messages(queue=PAYOUT_QUEUE)]
        assert forwarded.message.payout_id == "po_test1"
        assert forwarded.message.account_id == "acct_org1"
        assert forwarded.message.status == "paid"
        assert forwarded.message.stripe_event_id == "evt_test000001"
        assert (await self.current(stores, ids))["_etag"] == before["_etag"]
        assert self.announced(bus) == []

    @pytest.mark.usefixtures("stored")
    async def test_a_transfer_goes_to_the_enricher_and_touches_no_transaction(self, stores, ids, bus):
        before = await self.current(stores, ids)
        transfer = fixture(
            "transfer",
            id="tr_late1",
            created=T0 - 60,
            destination="acct_org1",
            destination_payment="py_arrived1",
            source_transaction="ch_charged1",
        )
        applied = await self.applier(stores.transactions, bus).apply(
            StripeEvent.parse(json.dumps(event("transfer.created", transfer, created=T0)))
        )
        assert applied.state is EventState.APPLIED
        [forwarded] = [decode_message(raw) for raw in bus.active_messages(queue=PAYOUT_QUEUE)]
        assert isinstance(forwarded.message, StripeTransferCreated)
        assert forwarded.message.transfer_id == "tr_late1"
        assert forwarded.message.destination_account_id == "acct_org1"
        assert forwarded.message.destination_payment_id == "py_arrived1"
        assert forwarded.message.source_charge_id == "ch_charged1"
        assert forwarded.message.transfer_created == datetime.fromtimestamp(T0 - 60, tz=UTC)
        assert forwarded.message.stripe_event_id == "evt_test000001"
        assert (await self.current(stores, ids))["_etag"] == before["_etag"]
        assert self.announced(bus) == []

    @pytest.mark.usefixtures("stored")
    @pytest.mark.parametrize(
        ("event_type", "kind", "changed"),
        [
            *[(t, "refund", REFUND_FIELDS) for t in ("refund.created", "refund.updated", "refund.failed")],
            ("charge.refund.updated", "refund", REFUND_FIELDS),
            ("charge.refunded", "charge", CHARGE_REFUND_FIELDS),
            *[
                (t, "dispute", DISPUTE_FIELDS)
                for t in (
                    "charge.dispute.created",
                    "charge.dispute.updated",
                    "charge.dispute.closed",
                    "charge.dispute.funds_withdrawn",
                )
            ],
        ],
    )
    async def test_each_event_type_changes_exactly_its_own_fields(
        self, stores, ids, bus, event_type, kind, changed
    ):
        before = await self.current(stores, ids)
        obj = fixture(kind, payment_intent=ids["pi"])
        if kind == "charge":
            obj["id"] = ids["ch"]
        await self.applier(stores.transactions, bus).apply(stripe_event(event_type, obj, created=T0))
        after = await self.current(stores, ids)
        differing = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        assert differing - SYSTEM_FIELDS == changed

    async def repoint(self, stores: Stores, ids, payment_id: str) -> None:
        """What ingest does when the source names another payment: the enricher's fields go, ours stay."""
        current = await self.current(stores, ids)
        moved = {key: value for key, value in current.items() if key != "depositStatus"}
        await stores.transactions.replace({**moved, "PaymentID": payment_id}, etag=current["_etag"])

    @pytest.mark.usefixtures("stored")
    async def test_a_repointed_order_stops_counting_the_old_payments_facts(self, stores, ids, bus):
        applier = self.applier(stores.transactions, bus)
        await applier.apply(stripe_event("refund.created", self.refund(ids, amount=1500), created=T0, n=1))
        lost = self.dispute(ids, status="lost")
        await applier.apply(stripe_event("charge.dispute.closed", lost, created=T0, n=2))
        before = await self.current(stores, ids)
        assert (before[STAMP], served_is_refunded(before), served_is_disputed(before)) == (
            ids["pi"],
            True,
            True,
        )
        await self.repoint(stores, ids, "pi_new")
        after = await self.current(stores, ids)
        assert after["stripeRefundStatus"] == "partial"  # kept: ingest never erases our fields
        assert (served_is_refunded(after), served_is_disputed(after)) == (False, False)

    @pytest.mark.usefixtures("stored")
    async def test_the_new_payments_first_event_clears_the_old_payments_facts(self, stores, ids, bus):
        applier = self.applier(stores.transactions, bus)
        await applier.apply(stripe_event("refund.created", self.refund(ids, amount=1500), created=T0, n=1))
        lost = self.dispute(ids, status="lost", reason="fraudulent")
        await applier.apply(stripe_event("charge.dispute.closed", lost, created=T0, n=2))
        await self.repoint(stores, ids, "pi_new")
        refund = fixture("refund", id="re_new", charge="ch_new", payment_intent="pi_new", amount=500)
        await applier.apply(stripe_event("refund.created", refund, created=T0 + 60, n=3))
        after = await self.current(stores, ids)
        assert after[STAMP] == "pi_new"
        assert list(after["stripeRefunds"]) == ["re_new"]
        assert (after["stripeRefundedAmount"], after["stripeRefundStatus"]) == (5.0, "partial")
        cleared = ("stripeDisputes", "stripeDisputeStatus", "stripeDisputeReason", "stripeDisputeStateAt")
        assert [after.get(name) for name in cleared] == [None] * len(cleared)
        assert (served_is_refunded(after), served_is_disputed(after)) == (True, False)
        *_, announced = self.announced(bus)
        assert set(announced.message.changed_fields) >= {"stripeRefunds", "stripeDisputeStatus", STAMP}

    @pytest.mark.usefixtures("stored")
    async def test_a_late_event_about_the_old_payment_finds_no_order(self, stores, ids, bus):
        await self.repoint(stores, ids, "pi_new")
        late = stripe_event("refund.created", self.refund(ids, amount=1500), created=T0, n=1)
        with pytest.raises(NoMatchingTransactionError):
            await self.applier(stores.transactions, bus).apply(late)

    @pytest.mark.usefixtures("stored")
    async def test_an_unknown_event_type_is_ignored_with_its_reason_and_changes_nothing(
        self, stores, ids, bus
    ):
        before = await self.current(stores, ids)
        customer = fixture("customer")
        outcome = await self.applier(stores.transactions, bus).apply(
            stripe_event("customer.created", customer, created=T0)
        )
        assert (outcome.state, outcome.reason) == (EventState.IGNORED, "unknown-event-type")
        assert (await self.current(stores, ids))["_etag"] == before["_etag"]
        assert self.announced(bus) == []

    # Finding the transactions: the enricher's index by point reads, checked; the query when it cannot answer.

    @pytest.mark.usefixtures("stored")
    async def test_an_indexed_payment_is_applied_by_point_reads_alone(self, stores, ids, bus):
        facts = self.facts(NoQueries(stores.transactions))
        applied = await self.applier(facts, bus).apply(
            stripe_event("refund.created", self.refund(ids, amount=1500), created=T0)
        )
        assert applied.state is EventState.APPLIED
        assert (await self.current(stores, ids))["stripeRefundStatus"] == "partial"
        assert facts.fallbacks == {}
        assert len(self.announced(bus)) == 1

    async def test_the_charge_alias_finds_an_order_stored_under_its_payment_intent(self, stores, ids, bus):
        document = {"id": ids["tx"], "eventId": ids["event"], "PaymentID": ids["pi"], "TotalAmount": 40.0}
        await stores.transactions.create({**document, "stripeChargeId": ids["ch"]})
        await self.index(stores, ids["ch"], refs=[TransactionRef(ids["event"], ids["tx"])])
        facts = self.facts(NoQueries(stores.transactions))
        dispute = fixture("dispute", charge=ids["ch"], payment_intent=None, status="needs_response")
        await self.applier(facts, bus).apply(stripe_event("charge.dispute.created", dispute, created=T0))
        assert (await self.current(stores, ids))["stripeDisputeStatus"] == "needs_response"
        assert facts.fallbacks == {}

    async def test_a_payment_not_indexed_yet_is_found_by_the_query_and_counted(self, stores, ids, bus):
        document = {"id": ids["tx"], "eventId": ids["event"], "PaymentID": ids["pi"], "TotalAmount": 40.0}
        await stores.transactions.create(document)
        facts = self.facts(stores.transactions)
        refund = self.refund(ids, amount=4000)
        await self.applier(facts, bus).apply(stripe_event("refund.created", refund, created=T0))
        assert (await self.current(stores, ids))["stripeRefundStatus"] == "full"
        assert facts.fallbacks == {Fallback.NOT_INDEXED: 1}

    @pytest.mark.usefixtures("stored")
    async def test_a_listed_order_now_paid_by_another_payment_is_not_written_and_the_query_finds_the_rest(
        self, stores, ids, bus
    ):
        # The index still lists the order under the old payment; the order was re-pointed since, and
        # another order of the old payment was stored after the enricher's last look (not listed).
        await self.repoint(stores, ids, "pi_new")
        other = {"id": f"{ids['tx']}-b", "eventId": ids["event"], "PaymentID": ids["pi"], "TotalAmount": 40.0}
        await stores.transactions.create(other)
        repointed = await self.current(stores, ids)
        facts = self.facts(stores.transactions)
        await self.applier(facts, bus).apply(
            stripe_event("refund.created", self.refund(ids, amount=1500), created=T0)
        )
        after = await self.current(stores, ids)
        assert after["_etag"] == repointed["_etag"]  # the new payment's order got no fact of the old one
        assert "stripeRefunds" not in after
        found = await stores.transactions.read(other["id"], partition_key=ids["event"])
        assert (found["stripeRefundStatus"], found[STAMP]) == ("partial", ids["pi"])
        assert facts.fallbacks == {Fallback.STALE_ENTRY: 1}
        assert [m.message.transaction_id for m in self.announced(bus)] == [other["id"]]

    async def test_a_listed_order_that_is_gone_falls_back_to_the_query(self, stores, ids, bus):
        document = {"id": ids["tx"], "eventId": ids["event"], "PaymentID": ids["pi"], "TotalAmount": 40.0}
        await stores.transactions.create(document)
        await self.index(stores, ids["pi"], refs=[TransactionRef(ids["event"], "tx-deleted")])
        facts = self.facts(stores.transactions)
        refund = self.refund(ids, amount=4000)
        await self.applier(facts, bus).apply(stripe_event("refund.created", refund, created=T0))
        assert (await self.current(stores, ids))["stripeRefundStatus"] == "full"
        assert facts.fallbacks == {Fallback.STALE_ENTRY: 1}

    @pytest.mark.usefixtures("stored")
    async def test_an_order_written_through_the_index_is_not_written_or_announced_again_by_the_fallback(
        self, stores, ids, bus
    ):
        # Listed: the stored order (valid) and one that is gone; the query then finds the stored one again.
        await self.index(
            stores,
            ids["pi"],
            refs=[TransactionRef(ids["event"], ids["tx"]), TransactionRef(ids["event"], "tx-deleted")],
        )
        facts = self.facts(stores.transactions)
        await self.applier(facts, bus).apply(
            stripe_event("refund.created", self.refund(ids, amount=1500), created=T0)
        )
        assert (await self.current(stores, ids))["stripeRefundedAmount"] == 15.0
        assert facts.fallbacks == {Fallback.STALE_ENTRY: 1}
        assert [m.message.transaction_id for m in self.announced(bus)] == [ids["tx"]]

    # Applying a batch: its payments' index documents and transactions read at once by two queries.

    async def order_of(self, stores: Stores, ids, n: int) -> TransactionRef:
        """One more indexed order, of its own payment, in the event ``ids["event"]``."""
        ref = TransactionRef(ids["event"], f"{ids['tx']}-{n}")
        payment = f"{ids['pi']}{n}"
        document = {
            "id": ref.transaction_id,
            "eventId": ref.event_id,
            "PaymentID": payment,
            "TotalAmount": 40.0,
        }
        await stores.transactions.create(document)
        await self.index(stores, payment, f"{ids['ch']}{n}", refs=[ref])
        return ref

    async def test_a_batch_is_applied_with_two_queries_and_no_point_reads(self, stores, ids, bus):
        refs = [await self.order_of(stores, ids, n) for n in range(3)]
        refunds = [
            stripe_event(
                "refund.created",
                fixture(
                    "refund",
                    id=f"re_{n}",
                    charge=f"{ids['ch']}{n}",
                    payment_intent=f"{ids['pi']}{n}",
                    amount=1000,
                ),
                created=T0,
                n=n + 1,
            )
            for n in range(3)
        ]
        transactions, index = Counted(stores.transactions), Counted(stores.index)
        applier = self.applier(TransactionFacts(transactions, index=index), bus)
        prepared = await applier.prepared_for(refunds)
        outcomes = await asyncio.gather(*(prepared.apply(refund) for refund in refunds))
        assert {outcome.state for outcome in outcomes} == {EventState.APPLIED}
        assert (transactions.reads, index.reads) == (0, 0)
        assert (transactions.queries, index.queries) == (1, 1)
        for ref in refs:
            stored = await stores.transactions.read(ref.transaction_id, partition_key=ref.event_id)
            assert (stored["stripeRefundedAmount"], stored["stripeRefundStatus"]) == (10.0, "partial")
        assert self.announced(bus) == []  # held for the processor's settle round
        assert await prepared.send_held() == set()
        assert sorted(m.message.transaction_id for m in self.announced(bus)) == [
            r.transaction_id for r in refs
        ]

    async def test_a_batchs_announcements_are_held_for_one_send(self, stores, ids, bus):
        refs = [await self.order_of(stores, ids, n) for n in range(3)]
        refunds = [self.refund_of(ids, n, order=n, amount=500) for n in range(3)]
        changes = SendCounter(bus.topic_publisher(topic=TOPIC))
        applier = StripeFactsApplier(
            transactions=TransactionFacts(stores.transactions, index=stores.index),
            changes=changes,
            payouts=bus.publisher(queue=PAYOUT_QUEUE),
        )
        prepared = await applier.prepared_for(refunds)
        await asyncio.gather(*(prepared.apply(refund) for refund in refunds))
        assert (changes.sends, self.announced(bus)) == (0, [])
        assert await prepared.send_held() == set()
        assert changes.sends == 1
        announced = sorted(m.message.transaction_id for m in self.announced(bus))
        assert announced == sorted(ref.transaction_id for ref in refs)

    @pytest.mark.usefixtures("stored")
    async def test_two_refunds_of_one_order_in_a_batch_both_count(self, stores, ids, bus):
        refunds = [
            stripe_event("refund.created", self.refund(ids, id=f"re_{n}", amount=500), created=T0, n=n)
            for n in (1, 2)
        ]
        prepared = await self.applier(stores.transactions, bus).prepared_for(refunds)
        # Both start from the copy the batch read: the second write finds it changed and decides again.
        await asyncio.gather(*(prepared.apply(refund) for refund in refunds))
        after = await self.current(stores, ids)
        assert set(after["stripeRefunds"]) == {"re_1", "re_2"}
        assert after["stripeRefundedAmount"] == 10.0

    @pytest.mark.usefixtures("stored")
    async def test_an_order_written_after_the_batch_read_it_is_decided_on_what_is_stored(
        self, stores, ids, bus
    ):
        newer = stripe_event("refund.updated", self.refund(ids, status="failed"), created=T0 + 5, n=2)
        older = stripe_event(
            "refund.created", self.refund(ids, status="succeeded", amount=900), created=T0, n=1
        )
        plain = self.applier(stores.transactions, bus)

        async def newer_lands_first() -> None:
            await plain.apply(newer)  # lands after the batch read the order, before its write

        racing = self.applier(Interleaved(stores.transactions, newer_lands_first), bus)
        prepared = await racing.prepared_for([older])
        await prepared.apply(older)
        after = await self.current(stores, ids)
        assert after["stripeRefunds"][fixture("refund")["id"]]["status"] == "failed"
        assert after["stripeRefundStatus"] == "none"

    async def test_in_a_batch_a_listed_order_that_is_gone_falls_back_to_the_query(self, stores, ids, bus):
        document = {"id": ids["tx"], "eventId": ids["event"], "PaymentID": ids["pi"], "TotalAmount": 40.0}
        await stores.transactions.create(document)
        await self.index(stores, ids["pi"], refs=[TransactionRef(ids["event"], "tx-deleted")])
        facts = self.facts(stores.transactions)
        refunds = [stripe_event("refund.created", self.refund(ids, amount=4000), created=T0)]
        prepared = await self.applier(facts, bus).prepared_for(refunds)
        await prepared.apply(refunds[0])
        assert (await self.current(stores, ids))["stripeRefundStatus"] == "full"
        assert facts.fallbacks == {Fallback.STALE_ENTRY: 1}

    # Applying a batch: its events decided on the copies read, their patches written together.

    def refund_of(self, ids, n: int, *, order: int, amount: int = 100) -> StripeEvent:
        obj = fixture(
            "refund",
            id=f"re_{n}",
            charge=f"{ids['ch']}{order}",
            payment_intent=f"{ids['pi']}{order}",
            amount=amount,
        )
        return stripe_event("refund.created", obj, created=T0, n=n)

    async def test_a_batch_of_refunds_in_one_partition_is_written_by_one_request(self, stores, ids, bus):
        # A cancelled show's refunds: many orders of one event (one partition), each refunded.
        refs = [await self.order_of(stores, ids, n) for n in range(6)]
        refunds = [self.refund_of(ids, n, order=n, amount=1000) for n in range(6)]
        transactions = Counted(stores.transactions)
        prepared = await self.applier(TransactionFacts(transactions, index=stores.index), bus).prepared_for(
            refunds
        )
        outcomes = await asyncio.gather(*(prepared.apply(refund) for refund in refunds))
        assert {outcome.state for outcome in outcomes} == {EventState.APPLIED}
        assert (transactions.writes, transactions.reads) == (1, 0)
        for ref in refs:
            stored = await stores.transactions.read(ref.transaction_id, partition_key=ref.event_id)
            assert (stored["stripeRefundedAmount"], stored["stripeRefundStatus"]) == (10.0, "partial")
        assert await prepared.send_held() == set()
        announced = sorted(m.message.transaction_id for m in self.announced(bus))
        assert announced == sorted(ref.transaction_id for ref in refs)

    async def test_refunds_of_one_order_in_a_batch_are_one_write_and_each_counts_once(self, stores, ids, bus):
        ref = await self.order_of(stores, ids, 0)
        refunds = [self.refund_of(ids, n, order=0, amount=500) for n in range(4)]
        transactions = Counted(stores.transactions)
        prepared = await self.applier(TransactionFacts(transactions, index=stores.index), bus).prepared_for(
            refunds
        )
        for refund in refunds:
            await prepared.apply(refund)
        assert transactions.writes == 1
        stored = await stores.transactions.read(ref.transaction_id, partition_key=ref.event_id)
        assert set(stored["stripeRefunds"]) == {f"re_{n}" for n in range(4)}
        assert stored["stripeRefundedAmount"] == 20.0
        assert await prepared.send_held() == set()
        changed = [m.message.changed_fields for m in self.announced(bus)]
        assert len(changed) == 4
        assert all("stripeRefunds" in fields for fields in changed)

    async def test_a_copy_changed_in_a_batch_still_counts_every_refund_once(self, stores, ids, bus):
        refs = [await self.order_of(stores, ids, n) for n in range(4)]
        refunds = [self.refund_of(ids, n, order=n % 4, amount=500) for n in range(8)]
        plain = self.applier(stores.transactions, bus)

        async def another_refund_lands() -> None:
            # Order 1 is refunded by an event outside the batch after the batch read it.
            await plain.apply(self.refund_of(ids, 99, order=1, amount=700))

        racing = self.applier(Interleaved(stores.transactions, another_refund_lands), bus)
        prepared = await racing.prepared_for(refunds)
        outcomes = await asyncio.gather(*(prepared.apply(refund) for refund in refunds))
        assert {outcome.state for outcome in outcomes} == {EventState.APPLIED}
        for n, ref in enumerate(refs):
            stored = await stores.transactions.read(ref.transaction_id, partition_key=ref.event_id)
            expected = {f"re_{n}", f"re_{n + 4}", *(["re_99"] if n == 1 else [])}
            assert set(stored["stripeRefunds"]) == expected
            assert stored["stripeRefundedAmount"] == (17.0 if n == 1 else 10.0)
        assert await prepared.send_held() == set()
        announced = Counter(m.message.transaction_id for m in self.announced(bus))
        assert announced == {ref.transaction_id: 3 if n == 1 else 2 for n, ref in enumerate(refs)}

    async def test_an_event_of_a_batch_whose_copies_cannot_decide_it_is_applied_on_its_own(
        self, stores, ids, bus
    ):
        ref = await self.order_of(stores, ids, 0)
        without_id = {k: v for k, v in self.refund_of(ids, 1, order=0).data_object.items() if k != "id"}
        broken = stripe_event("refund.created", without_id, created=T0)
        good = self.refund_of(ids, 2, order=0, amount=300)
        prepared = await self.applier(stores.transactions, bus).prepared_for([broken, good])
        assert (await prepared.apply(good)).state is EventState.APPLIED
        with pytest.raises(KeyError):  # the event's own apply meets its fault, counted as an attempt
            await prepared.apply(broken)
        stored = await stores.transactions.read(ref.transaction_id, partition_key=ref.event_id)
        assert stored["stripeRefundedAmount"] == 3.0
