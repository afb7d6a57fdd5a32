"""The enricher's rules as plain functions: routes, names, money, deposit statuses, the field patch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from stripe_shapes import PLATFORM, account, charge, payment_intent

from enricher.accounts import account_display_name, has_manual_payouts
from enricher.deposits import DepositStatus, deposit_status, iso_date
from enricher.findings import ENRICHER_FIELDS, Findings, PayoutTrace, enrichment_fields, unresolved_fields
from enricher.money import to_major_units
from enricher.routing import Route, RouteType, classify_route
from otcommon.enrichment import REASON_FIELD, STATE_FIELD, EnrichmentState
from otcommon.schemas import ENRICHMENT_FIELDS, Enrichment, TicketTransaction

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class TestRoute:
    def test_a_charge_found_on_a_connected_account_is_a_direct_connected_charge(self):
        route = classify_route(owner_account_id="acct_org1", charge=charge("ch_1"))
        assert route == Route(RouteType.CONNECTED, destination_account_id="acct_org1", direct=True)

    def test_a_platform_charge_with_a_destination_is_connected_to_it(self):
        route = classify_route(owner_account_id=None, charge=charge("ch_1", destination="acct_org2"))
        assert route == Route(RouteType.CONNECTED, destination_account_id="acct_org2")

    def test_an_expanded_destination_counts_like_its_id(self):
        expanded = charge("ch_1")
        expanded["transfer_data"] = {"destination": {"id": "acct_org2", "object": "account"}}
        assert classify_route(owner_account_id=None, charge=expanded).destination_account_id == "acct_org2"

    def test_on_behalf_of_makes_a_platform_charge_connected(self):
        route = classify_route(owner_account_id=None, charge=charge("ch_1", on_behalf_of="acct_org3"))
        assert route.route_type is RouteType.CONNECTED
        assert route.destination_account_id == "acct_org3"

    def test_the_payment_intent_names_the_destination_when_the_charge_does_not(self):
        route = classify_route(
            owner_account_id=None,
            charge=charge("ch_1"),
            payment_intent=payment_intent("pi_1", destination="acct_o"),
        )
        assert route.destination_account_id == "acct_o"

    def test_a_separate_transfer_to_a_connected_account_is_connected(self):
        route = classify_route(owner_account_id=None, charge=charge("ch_1"), transfer_destination="acct_org4")
        assert route == Route(RouteType.CONNECTED, destination_account_id="acct_org4")

    def test_a_plain_platform_charge_is_platform(self):
        route = classify_route(
            owner_account_id=None, charge=charge("ch_1"), payment_intent=payment_intent("pi_1")
        )
        assert route == Route(RouteType.PLATFORM)


class TestAccountName:
    def test_business_name_first(self):
        named = account("acct_1", business_name="Big Shows", display_name="BS", email="a@example.com")
        assert account_display_name(account=named) == "Big Shows"

    def test_then_dashboard_display_name(self):
        named = account("acct_1", display_name="Dash", email="a@example.com")
        assert account_display_name(account=named) == "Dash"

    def test_then_email(self):
        assert account_display_name(account=account("acct_1", email="a@example.com")) == "a@example.com"

    def test_then_the_id_and_blank_names_do_not_count(self):
        assert (
            account_display_name(account=account("acct_1", business_name="  ", display_name="")) == "acct_1"
        )

    def test_manual_payout_schedule(self):
        assert has_manual_payouts(account=account("acct_1", interval="manual"))
        assert not has_manual_payouts(account=account("acct_1", interval="daily"))


class TestMoney:
    @pytest.mark.parametrize(
        ("amount", "currency", "expected"),
        [
            (1099, "usd", 10.99),
            (1099, "EUR", 10.99),
            (500, "jpy", 500.0),
            (15000, "krw", 15000.0),
            (1234, "xof", 1234.0),
            (1500, "kwd", 1.5),
            (-250, "usd", -2.5),
            (0, "usd", 0.0),
        ],
    )
    def test_minor_units_become_major_units(self, amount, currency, expected):
        assert to_major_units(amount=amount, currency=currency) == expected

    def test_no_amount_stays_none(self):
        assert to_major_units(amount=None, currency="usd") is None

    def test_an_amount_needs_a_currency(self):
        with pytest.raises(ValueError, match="currency"):
            to_major_units(amount=100, currency=None)

    def test_a_non_integer_amount_is_refused(self):
        with pytest.raises(TypeError):
            to_major_units(amount=10.5, currency="usd")  # type: ignore[arg-type]


class TestDepositStatus:
    @pytest.mark.parametrize(
        ("payout_status", "expected"),
        [
            ("paid", DepositStatus.PAID),
            ("pending", DepositStatus.PENDING),
            ("in_transit", DepositStatus.PENDING),
            ("failed", DepositStatus.FAILED),
            ("canceled", DepositStatus.FAILED),
            (None, DepositStatus.PENDING),
        ],
    )
    def test_stripe_payout_statuses(self, payout_status, expected):
        assert deposit_status(payout_status=payout_status) is expected

    def test_manual_payouts_are_not_traceable(self):
        assert deposit_status(payout_status="paid", manual_payouts=True) is DepositStatus.NOT_TRACEABLE

    def test_an_unknown_status_is_an_error_not_a_guess(self):
        with pytest.raises(ValueError, match="unknown Stripe payout status"):
            deposit_status(payout_status="exploded")

    def test_iso_date_in_utc(self):
        assert iso_date(unix_seconds=1_700_200_000) == "2023-11-17"
        assert iso_date(unix_seconds=None) is None


def _destination_findings(**payout: object) -> Findings:
    return Findings(
        route=Route(RouteType.CONNECTED, destination_account_id="acct_org"),
        platform_account_id=PLATFORM,
        platform_account_name="OpenTickets",
        destination_account_name="Big Shows",
        charge_id="ch_1",
        payment_intent_id="pi_1",
        balance_transaction_id="txn_1",
        transfer_id="tr_1",
        application_fee_amount=150,
        net_amount=1037,
        currency="usd",
        payout=PayoutTrace(**payout),  # type: ignore[arg-type]
    )


class TestEnrichmentFields:
    def test_a_paid_destination_charge(self):
        fields = enrichment_fields(
            findings=_destination_findings(
                available_on=1_700_000_000,
                payout_id="po_1",
                payout_status="paid",
                arrival_date=1_700_200_000,
                bank_name="STRIPE TEST BANK",
                bank_last4="6789",
            ),
            enriched_at=NOW,
        )
        assert fields == {
            "stripeRouteType": "connected",
            "stripePlatformAccountId": PLATFORM,
            "stripePlatformAccountName": "OpenTickets",
            "stripeDestinationAccountId": "acct_org",
            "stripeDestinationAccountName": "Big Shows",
            "stripeChargeId": "ch_1",
            "stripePaymentIntentId": "pi_1",
            "stripeBalanceTransactionId": "txn_1",
            "stripeTransferId": "tr_1",
            "stripeApplicationFeeAmount": 1.5,
            "stripeNetAmount": 10.37,
            "stripeCurrency": "usd",
            "stripeAvailableOn": "2023-11-14",
            "depositStatus": "paid",
            "depositDate": "2023-11-17",
            "depositBankName": "STRIPE TEST BANK",
            "depositBankLast4": "6789",
            "stripePayoutId": "po_1",
            "stripePayoutStatus": "paid",
            STATE_FIELD: "enriched",
            REASON_FIELD: None,
            "enrichedAt": "2026-06-01T12:00:00.000Z",
        }

    def test_funds_not_yet_paid_out_are_pending_with_available_on(self):
        fields = enrichment_fields(
            findings=_destination_findings(available_on=1_700_000_000), enriched_at=NOW
        )
        assert fields["depositStatus"] == "pending"
        assert fields["stripeAvailableOn"] == "2023-11-14"
        assert fields["stripePayoutId"] is None
        assert fields[STATE_FIELD] == EnrichmentState.ENRICHED

    def test_a_platform_route_names_no_destination(self):
        findings = Findings(
            route=Route(RouteType.PLATFORM), platform_account_id=PLATFORM, platform_account_name="OT"
        )
        fields = enrichment_fields(findings=findings, enriched_at=NOW)
        assert fields["stripeRouteType"] == "platform"
        assert fields["stripeDestinationAccountId"] is None

    def test_it_writes_exactly_the_enricher_owned_fields(self):
        fields = enrichment_fields(findings=_destination_findings(), enriched_at=NOW)
        assert set(fields) == ENRICHER_FIELDS
        assert set(unresolved_fields(reason="x", enriched_at=NOW)) == ENRICHER_FIELDS

    def test_it_never_names_a_source_owned_field(self):
        source_owned = {info.alias for info in TicketTransaction.model_fields.values()} - ENRICHER_FIELDS
        assert "TotalAmount" in source_owned
        assert not ENRICHER_FIELDS & source_owned
        assert ENRICHMENT_FIELDS <= ENRICHER_FIELDS

    def test_the_fields_validate_as_a_transaction(self):
        fields = enrichment_fields(
            findings=_destination_findings(payout_status="in_transit"), enriched_at=NOW
        )
        parsed = Enrichment.model_validate(fields)
        assert parsed.deposit_status == "pending"
        assert parsed.stripe_payout_status == "in_transit"

    def test_unresolved_needs_a_reason_and_clears_earlier_findings(self):
        fields = unresolved_fields(reason="no account knows pi_1", enriched_at=NOW)
        assert fields[STATE_FIELD] == "unresolved"
        assert fields[REASON_FIELD] == "no account knows pi_1"
        assert fields["stripeRouteType"] is None
        with pytest.raises(ValueError, match="reason"):
            unresolved_fields(reason=" ", enriched_at=NOW)
