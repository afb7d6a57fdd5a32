"""The API's response types; JSON names are camelCase like the shared contract's."""

from __future__ import annotations

from typing import Literal

from otcommon.schemas import ContractModel

Granularity = Literal["hour", "day", "week"]


class BreakdownRow(ContractModel):
    """The orders of one group (a ticket type, source, referral code, event, deposit status or route)."""

    key: str | None
    label: str | None = None
    orders_count: int
    tickets_sold: int
    gross_revenue: float
    organizer_net: float
    refund_count: int


class ConnectedAccount(ContractModel):
    """The connected account that received the most money."""

    account_id: str
    account_name: str | None
    orders_count: int
    gross_revenue: float


class RouteSummary(ContractModel):
    """Where the money went: platform vs connected accounts, and payments not yet traced."""

    routes: list[BreakdownRow]
    top_connected_account: ConnectedAccount | None
    unresolved_count: int


class TimeSeriesPoint(ContractModel):
    """One hour, day or week of orders in the requested time zone."""

    bucket: str
    orders_count: int
    tickets_sold: int
    gross_revenue: float
    organizer_net: float
