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

# A payout only moves forward: pending -> in_transit -> paid, and a paid payout may still fail
# (Stripe reports a failure up to a few days after ``paid``). failed and canceled are final.
_PAYOUT_STATUS_ORDER = {"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3}


def is_payout_status(status: str) -> bool:
    """Whether ``status`` is one of Stripe's payout statuses."""
    return status in _PAYOUT_STATUS_ORDER


def payout_status_is_behind(status: str | None, *, than: str | None) -> bool:
    """Whether a payout in ``status`` is older than one in ``than``: that state must not replace it.

    Unknown or missing statuses are never behind (nothing known to protect).
    """
    if status not in _PAYOUT_STATUS_ORDER or than not in _PAYOUT_STATUS_ORDER:
        return False
    return _PAYOUT_STATUS_ORDER[status] < _PAYOUT_STATUS_ORDER[than]


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
