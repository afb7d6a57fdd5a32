"""Small Stripe objects shaped like Stripe's own fixtures, with only the fields the enricher reads."""

from __future__ import annotations

from typing import Any

PLATFORM = "acct_platform0001"


def account(
    account_id: str,
    *,
    business_name: str | None = None,
    display_name: str | None = None,
    email: str | None = None,
    interval: str = "daily",
) -> dict[str, Any]:
    return {
        "id": account_id,
        "object": "account",
        "email": email,
        "business_profile": {"name": business_name, "url": None},
        "settings": {
            "dashboard": {"display_name": display_name, "timezone": "Etc/UTC"},
            "payouts": {"schedule": {"delay_days": 2, "interval": interval}},
        },
    }


def balance_transaction(
    txn_id: str, *, source: str, amount: int = 1099, fee: int = 62, available_on: int = 1_700_000_000
) -> dict[str, Any]:
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "fee": fee,
        "net": amount - fee,
        "currency": "usd",
        "available_on": available_on,
        "created": available_on - 2 * 86400,
        "source": source,
        "status": "available",
        "type": "charge" if source.startswith("ch_") else "payment",
        "reporting_category": "charge",
    }


def charge(  # noqa: PLR0913  # a test builder names every field a test may set
    charge_id: str,
    *,
    created: int = 1_699_800_000,
    amount: int = 1099,
    currency: str = "usd",
    payment_intent: str | None = None,
    balance_txn: Any = None,
    destination: str | None = None,
    on_behalf_of: str | None = None,
    transfer: str | None = None,
    application_fee_amount: int | None = None,
    source_transfer: Any = None,
    transfer_group: str | None = None,
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "currency": currency,
        "created": created,
        "paid": True,
        "status": "succeeded",
        "payment_intent": payment_intent,
        "balance_transaction": balance_txn,
        "transfer_data": {"destination": destination, "amount": None} if destination else None,
        "on_behalf_of": on_behalf_of,
        "transfer": transfer,
        "application_fee_amount": application_fee_amount,
        "source_transfer": source_transfer,
        "transfer_group": transfer_group,
    }


def payment_intent(
    pi_id: str, *, latest_charge: Any = None, destination: str | None = None, on_behalf_of: str | None = None
) -> dict[str, Any]:
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 1099,
        "currency": "usd",
        "status": "succeeded",
        "latest_charge": latest_charge,
        "transfer_data": {"destination": destination} if destination else None,
        "on_behalf_of": on_behalf_of,
        "application_fee_amount": None,
    }


def payout(
    payout_id: str,
    *,
    status: str = "paid",
    arrival_date: int = 1_700_200_000,
    destination: str = "ba_bank0001",
    created: int = 1_700_100_000,
    automatic: bool = True,
) -> dict[str, Any]:
    return {
        "id": payout_id,
        "object": "payout",
        "amount": 1100,
        "currency": "usd",
        "arrival_date": arrival_date,
        "automatic": automatic,
        "created": created,
        "destination": destination,
        "status": status,
        "method": "standard",
        "type": "bank_account",
    }


def transfer(transfer_id: str, *, destination: str, destination_payment: str) -> dict[str, Any]:
    return {
        "id": transfer_id,
        "object": "transfer",
        "amount": 1000,
        "currency": "usd",
        "destination": destination,
        "destination_payment": destination_payment,
        "source_transaction": None,
        "transfer_group": None,
        "created": 0,
    }


def bank_account(bank_id: str, *, bank_name: str = "STRIPE TEST BANK", last4: str = "6789") -> dict[str, Any]:
    return {
        "id": bank_id,
        "object": "bank_account",
        "bank_name": bank_name,
        "last4": last4,
        "country": "US",
        "currency": "usd",
        "status": "new",
    }
