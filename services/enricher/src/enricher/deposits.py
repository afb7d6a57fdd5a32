"""Payout facts as the dashboard's deposit fields."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum


class DepositStatus(StrEnum):
    """``depositStatus``: the dashboard's four values."""

    PAID = "paid"
    PENDING = "pending"
    FAILED = "failed"
    NOT_TRACEABLE = "not_traceable"


_BY_PAYOUT_STATUS = {
    "paid": DepositStatus.PAID,
    "pending": DepositStatus.PENDING,
    "in_transit": DepositStatus.PENDING,
    "failed": DepositStatus.FAILED,
    "canceled": DepositStatus.FAILED,
}

OPEN_PAYOUT_STATUSES = frozenset({"pending", "in_transit"})
"""Payout statuses that will still change; ``refresh-payouts`` revisits payments in them."""


def deposit_status(*, payout_status: str | None, manual_payouts: bool = False) -> DepositStatus:
    """The deposit status for a Stripe payout status (None: not paid out yet).

    Manual payouts cannot be traced back to payments, so they are ``not_traceable`` whatever the
    status; a payment whose funds are not in a payout yet is ``pending``.
    """
    if manual_payouts:
        return DepositStatus.NOT_TRACEABLE
    if payout_status is None:
        return DepositStatus.PENDING
    try:
        return _BY_PAYOUT_STATUS[payout_status]
    except KeyError:
        raise ValueError(f"unknown Stripe payout status {payout_status[:40]!r}") from None


def iso_date(*, unix_seconds: int | None) -> str | None:
    """A Stripe timestamp (``arrival_date``, ``available_on``) as an ISO date in UTC."""
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, tz=UTC).date().isoformat()
