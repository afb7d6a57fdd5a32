"""The Stripe side agrees with the orders and follows Stripe's rules for routes and payouts."""

from __future__ import annotations

from collections import Counter

import pytest

from devstack.scenario import Route, Scenario, StripeWorld
from devstack.scenario.stripe_world import LATE_TRANSFER_SECONDS


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(seed=5, events=6, orders=3_000, organizers=4)


@pytest.fixture
def stripe(scenario: Scenario) -> StripeWorld:
    return scenario.stripe


def test_accounts_have_names_with_fallbacks(scenario: Scenario, stripe: StripeWorld) -> None:
    platform = stripe.accounts[stripe.platform_account_id]
    assert platform["business_profile"]["name"]
    connected = [a for a in stripe.accounts if a != stripe.platform_account_id]
    assert len(connected) == 4
    assert all(account_id.startswith("acct_") for account_id in stripe.accounts)
    nameless = [a for a in connected if not stripe.accounts[a]["business_profile"]["name"]]
    assert nameless, "some accounts lack a business name"
    for account_id in nameless:
        account = stripe.accounts[account_id]
        assert stripe.account_name(account_id) in {
            account["settings"]["dashboard"]["display_name"],
            account["email"],
        }
    organizer_accounts = {o.account_id for o in scenario.world.organizers}
    assert organizer_accounts == set(connected)


def test_routes_place_objects_on_the_right_account(stripe: StripeWorld) -> None:
    for facts in stripe.payments.values():
        charge = stripe.charges[facts.charge_id]
        assert stripe.owner[facts.charge_id] == facts.account_id
        txn = stripe.balance_transactions[charge["balance_transaction"]]
        assert txn["net"] == txn["amount"] - txn["fee"]
        assert txn["available_on"] > charge["created"]
        if facts.payment_intent_id is not None:
            intent = stripe.payment_intents[facts.payment_intent_id]
            assert intent["latest_charge"] == facts.charge_id
            assert charge["payment_intent"] == facts.payment_intent_id
        match facts.route:
            case Route.PLATFORM:
                assert facts.account_id == stripe.platform_account_id
                assert charge["transfer_data"] is None
                assert charge["on_behalf_of"] is None
            case Route.DESTINATION:
                assert facts.account_id == stripe.platform_account_id
                assert charge["transfer_data"] == {"destination": facts.destination_account_id}
                transfer = stripe.transfers[charge["transfer"]]
                assert transfer["destination"] == facts.destination_account_id
                payment = stripe.charges[transfer["destination_payment"]]
                assert stripe.owner[payment["id"]] == facts.destination_account_id
                assert payment["id"].startswith("py_")
            case Route.SEPARATE_TRANSFER:
                assert_a_separate_transfer(stripe, facts.charge_id, destination=facts.destination_account_id)
                assert charge["transfer_group"] == stripe.transfers[facts.transfer_id]["transfer_group"]
            case Route.DIRECT:
                assert facts.account_id != stripe.platform_account_id
                assert facts.account_id in stripe.accounts


def assert_a_separate_transfer(stripe: StripeWorld, charge_id: str, *, destination: str | None) -> None:
    """A platform charge with no link to the organizer; one transfer names it as its source."""
    charge = stripe.charges[charge_id]
    assert stripe.owner[charge_id] == stripe.platform_account_id
    assert charge["transfer_data"] is None
    assert charge["on_behalf_of"] is None
    assert "transfer" not in charge
    assert charge["transfer_group"]
    transfers = [t for t in stripe.transfers.values() if t["source_transaction"] == charge_id]
    assert len(transfers) == 1
    transfer = transfers[0]
    assert stripe.owner[transfer["id"]] == stripe.platform_account_id
    assert transfer["destination"] == destination
    payment = stripe.charges[transfer["destination_payment"]]
    assert payment["id"].startswith("py_")
    assert stripe.owner[payment["id"]] == destination
    assert payment["source_transfer"] == transfer["id"]
    assert payment["amount"] == transfer["amount"] < charge["amount"]


def test_some_payment_ids_are_legacy_charges(stripe: StripeWorld) -> None:
    charge_ids = [p for p in stripe.payments.values() if p.payment_id.startswith("ch_")]
    assert any(p.payment_intent_id is None for p in charge_ids)
    assert any(p.payment_intent_id is not None for p in charge_ids)


def test_payouts_cover_statuses_banks_and_manual_schedules(scenario: Scenario, stripe: StripeWorld) -> None:
    statuses = Counter(p["status"] for p in stripe.payouts.values())
    assert statuses["paid"] > 0
    assert statuses["failed"] > 0
    manual = [p for p in stripe.payouts.values() if not p["automatic"]]
    assert manual
    assert all(stripe.payout_balance_transactions[p["id"]] == [] for p in manual)
    for payout in stripe.payouts.values():
        bank = stripe.bank_accounts[payout["destination"]]
        assert bank["account"] == stripe.owner[payout["id"]]
        assert bank["bank_name"]
        assert len(bank["last4"]) == 4
        assert payout["arrival_date"] > payout["created"]
    assert statuses["in_transit"] > 0, "yesterday's payouts are on their way at noon"
    # Shortly after midnight UTC the day's payouts have been created but not yet sent.
    scenario.advance(minutes=13 * 60)
    assert "pending" in {p["status"] for p in scenario.stripe.payouts.values()}


def test_automatic_payouts_list_the_payments_they_settled(scenario: Scenario, stripe: StripeWorld) -> None:
    in_payout = {txn: payout for payout, txns in stripe.payout_balance_transactions.items() for txn in txns}
    manual_accounts = {o.account_id for o in scenario.world.organizers if o.manual_payouts}
    traced = 0
    for facts in stripe.payments.values():
        settled_on = facts.destination_account_id or facts.account_id
        txn_id = (
            stripe.charges[facts.destination_payment_id]["balance_transaction"]
            if facts.destination_payment_id
            else facts.balance_transaction_id
        )
        if settled_on in manual_accounts or facts.available_on > scenario.now:
            assert txn_id not in in_payout
            continue
        payout = stripe.payouts[in_payout[txn_id]]
        assert stripe.owner[payout["id"]] == settled_on
        traced += 1
    assert traced > 0


def test_refunds_and_disputes_appear_on_charges(scenario: Scenario, stripe: StripeWorld) -> None:
    rows = {r["PaymentID"]: r for r in scenario.transactions() if r["PaymentID"]}
    for payment_id, row in rows.items():
        charge = stripe.charges[stripe.payments[payment_id].charge_id]
        assert (charge["amount_refunded"] > 0) == row["IsRefunded"]
        refunds = charge["refunds"]["data"]
        assert sum(r["amount"] for r in refunds) == charge["amount_refunded"]
        assert charge["refunded"] == (charge["amount_refunded"] == charge["amount"])
        assert charge["disputed"] == row["IsDisputed"]
    assert {r["charge"] for r in stripe.refunds.values()} == {
        stripe.payments[p].charge_id for p, r in rows.items() if r["IsRefunded"]
    }
    assert len(stripe.disputes) == sum(r["IsDisputed"] for r in rows.values())


def test_connected_payments_carry_the_platforms_application_fee(stripe: StripeWorld) -> None:
    for facts in stripe.payments.values():
        charge = stripe.charges[facts.charge_id]
        if facts.route in {Route.PLATFORM, Route.SEPARATE_TRANSFER}:
            # A separate transfer's platform keeps its share by transferring less, with no fee object.
            assert facts.application_fee_id is None
            assert facts.application_fee_amount is None
            assert charge["application_fee"] is None
            continue
        fee = stripe.application_fees[charge["application_fee"]]
        assert fee["id"] == facts.application_fee_id
        assert stripe.owner[fee["id"]] == stripe.platform_account_id
        assert fee["amount"] == facts.application_fee_amount
        if facts.route is Route.DESTINATION:
            assert fee["account"] == facts.destination_account_id
            assert fee["charge"] == facts.destination_payment_id
            assert fee["originating_transaction"] == facts.charge_id
        else:
            assert fee["account"] == facts.account_id
            assert fee["charge"] == facts.charge_id
            assert fee["originating_transaction"] is None


def test_ground_truth_names_the_payout_that_carried_each_payment(
    scenario: Scenario, stripe: StripeWorld
) -> None:
    manual_accounts = {o.account_id for o in scenario.world.organizers if o.manual_payouts}
    expected_deposit = {"paid": "paid", "pending": "pending", "in_transit": "pending", "failed": "failed"}
    statuses: Counter[str] = Counter()
    for facts in stripe.payments.values():
        settled_on = facts.destination_account_id or facts.account_id
        statuses[facts.deposit_status] += 1
        if settled_on in manual_accounts:
            assert facts.deposit_status == "not_traceable"
            assert facts.payout_id is None
            continue
        if facts.payout_id is None:
            assert facts.deposit_status == "pending"
            assert facts.available_on > scenario.now
            continue
        payout = stripe.payouts[facts.payout_id]
        assert stripe.owner[payout["id"]] == settled_on
        settled = (
            stripe.charges[facts.destination_payment_id]["balance_transaction"]
            if facts.destination_payment_id
            else facts.balance_transaction_id
        )
        assert settled in stripe.payout_balance_transactions[payout["id"]]
        assert facts.payout_status == payout["status"]
        assert facts.payout_arrival_date == payout["arrival_date"]
        assert facts.deposit_bank_account_id == payout["destination"]
        assert facts.deposit_status == expected_deposit[payout["status"]]
    assert {"paid", "pending", "failed", "not_traceable"} <= set(statuses)


def test_disputes_move_from_evidence_to_review_to_a_decision(scenario: Scenario) -> None:
    before = scenario.now
    scenario.advance(minutes=60, disputes=5)
    opened = [d for d, dispute in scenario.stripe.disputes.items() if dispute["created"] > before]
    assert opened
    assert {scenario.stripe.disputes[d]["status"] for d in opened} == {"needs_response"}
    scenario.advance(minutes=8 * 24 * 60)
    assert {scenario.stripe.disputes[d]["status"] for d in opened} == {"under_review"}
    scenario.advance(minutes=14 * 24 * 60)
    decided = [scenario.stripe.disputes[d]["status"] for d in opened]
    assert set(decided) <= {"won", "lost"}


def test_some_refunds_are_partial(stripe: StripeWorld) -> None:
    refunded = [c for c in stripe.charges.values() if c["amount_refunded"]]
    partial = [c for c in refunded if not c["refunded"]]
    assert partial, "some refunds return part of the amount"
    assert len(partial) < len(refunded), "most refunds return all of it"
    assert all(0 < c["amount_refunded"] < c["amount"] for c in partial)


def test_only_manual_payouts_are_canceled(stripe: StripeWorld) -> None:
    canceled = [p for p in stripe.payouts.values() if p["status"] == "canceled"]
    assert canceled
    assert not any(p["automatic"] for p in canceled)


def test_a_late_separate_transfer_moves_the_money_to_the_organizer_hours_after_the_charge(
    scenario: Scenario,
) -> None:
    sold = set(scenario.advance(minutes=12 * 60).new_ids)
    late = [
        order
        for order in scenario.orders()
        if order.id in sold
        and order.route is Route.SEPARATE_TRANSFER
        and scenario.now < order.purchase_at + LATE_TRANSFER_SECONDS
        and scenario.stripe.payments[order.payment_id].route is Route.PLATFORM
    ]
    assert late, "some separate transfer of the last hours is not made yet"
    before = scenario.stripe
    for order in late:
        facts = before.payments[order.payment_id]
        assert facts.destination_account_id is None
        assert facts.transfer_id is None
        assert not [t for t in before.transfers.values() if t["source_transaction"] == facts.charge_id]
    scenario.advance(minutes=LATE_TRANSFER_SECONDS // 60)
    after = scenario.stripe
    for order in late:
        facts = after.payments[order.payment_id]
        assert facts.route is Route.SEPARATE_TRANSFER
        assert_a_separate_transfer(after, facts.charge_id, destination=facts.destination_account_id)
        charge = after.charges[facts.charge_id]
        transfer = after.transfers[facts.transfer_id or ""]
        assert transfer["created"] == charge["created"] + LATE_TRANSFER_SECONDS
        arrived = after.charges[transfer["destination_payment"]]
        assert arrived["created"] == transfer["created"]
        # Made with `source_transaction`: available to the organizer when the charge's money is.
        arrived_txn = after.balance_transactions[arrived["balance_transaction"]]
        assert (
            arrived_txn["available_on"]
            == after.balance_transactions[charge["balance_transaction"]]["available_on"]
        )
        assert facts.net_amount == arrived_txn["net"]
