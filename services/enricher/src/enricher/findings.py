"""What the enricher found for one payment, and the transaction fields it writes from that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enricher.deposits import DepositStatus, deposit_status, iso_date
from enricher.money import to_major_units
from enricher.routing import Route, RouteType
from otcommon.enrichment import REASON_FIELD, STATE_FIELD, EnrichmentState
from otcommon.schemas import ENRICHMENT_FIELDS, format_timestamp

if TYPE_CHECKING:
    from datetime import datetime

ENRICHED_AT_FIELD = "enrichedAt"
PAYOUT_ID_FIELD = "stripePayoutId"
PAYOUT_STATUS_FIELD = "stripePayoutStatus"
CHARGE_ID_FIELD = "stripeChargeId"
PAYMENT_INTENT_ID_FIELD = "stripePaymentIntentId"

DEPOSIT_FIELDS: frozenset[str] = frozenset(
    {"depositStatus", "depositDate", "depositBankName", "depositBankLast4", PAYOUT_STATUS_FIELD}
)
"""The fields that follow the state of the payout named by ``stripePayoutId``."""

ENRICHER_FIELDS: frozenset[str] = ENRICHMENT_FIELDS | {
    PAYOUT_ID_FIELD,
    ENRICHED_AT_FIELD,
    STATE_FIELD,
    REASON_FIELD,
}
"""Every transaction field the enricher writes; it writes no other."""

COMPARED_FIELDS: frozenset[str] = ENRICHER_FIELDS - {ENRICHED_AT_FIELD}
"""The fields whose values decide whether a write changes anything (the time stamp does not)."""


@dataclass(frozen=True, kw_only=True)
class PayoutTrace:
    """Where the organizer's money went: the payout holding it, or why there is none yet."""

    available_on: int | None = None
    payout_id: str | None = None
    payout_status: str | None = None
    arrival_date: int | None = None
    bank_name: str | None = None
    bank_last4: str | None = None
    manual_payouts: bool = False


@dataclass(frozen=True, kw_only=True)
class Findings:
    """The Stripe facts of one payment, amounts in minor units as Stripe sends them."""

    route: Route
    platform_account_id: str
    platform_account_name: str
    destination_account_name: str | None = None
    charge_id: str | None = None
    payment_intent_id: str | None = None
    balance_transaction_id: str | None = None
    transfer_id: str | None = None
    application_fee_amount: int | None = None
    net_amount: int | None = None
    currency: str | None = None
    payout: PayoutTrace = PayoutTrace()

    @property
    def deposit_status(self) -> DepositStatus:
        """``depositStatus`` of the payout that carries the organizer's money."""
        return deposit_status(
            payout_status=self.payout.payout_status, manual_payouts=self.payout.manual_payouts
        )


def enrichment_fields(*, findings: Findings, enriched_at: datetime) -> dict[str, Any]:
    """Every enricher-owned field for a found payment (None clears what an earlier run wrote)."""
    route = findings.route
    payout = findings.payout
    connected = route.route_type is RouteType.CONNECTED
    return {
        "stripeRouteType": route.route_type.value,
        "stripePlatformAccountId": findings.platform_account_id,
        "stripePlatformAccountName": findings.platform_account_name,
        "stripeDestinationAccountId": route.destination_account_id if connected else None,
        "stripeDestinationAccountName": findings.destination_account_name if connected else None,
        CHARGE_ID_FIELD: findings.charge_id,
        PAYMENT_INTENT_ID_FIELD: findings.payment_intent_id,
        "stripeBalanceTransactionId": findings.balance_transaction_id,
        "stripeTransferId": findings.transfer_id,
        "stripeApplicationFeeAmount": to_major_units(
            amount=findings.application_fee_amount, currency=findings.currency
        ),
        "stripeNetAmount": to_major_units(amount=findings.net_amount, currency=findings.currency),
        "stripeCurrency": findings.currency,
        "stripeAvailableOn": iso_date(unix_seconds=payout.available_on),
        "depositStatus": findings.deposit_status.value,
        "depositDate": iso_date(unix_seconds=payout.arrival_date),
        "depositBankName": payout.bank_name,
        "depositBankLast4": payout.bank_last4,
        PAYOUT_ID_FIELD: payout.payout_id,
        PAYOUT_STATUS_FIELD: payout.payout_status,
        STATE_FIELD: EnrichmentState.ENRICHED.value,
        REASON_FIELD: None,
        ENRICHED_AT_FIELD: format_timestamp(enriched_at),
    }


def unresolved_fields(*, reason: str, enriched_at: datetime) -> dict[str, Any]:
    """The fields of a payment no Stripe account knows: the state, why, and when it was decided."""
    if not reason.strip():
        raise ValueError("an unresolved payment needs a reason")
    cleared = dict.fromkeys(ENRICHER_FIELDS)
    return {
        **cleared,
        STATE_FIELD: EnrichmentState.UNRESOLVED.value,
        REASON_FIELD: reason,
        ENRICHED_AT_FIELD: format_timestamp(enriched_at),
    }
