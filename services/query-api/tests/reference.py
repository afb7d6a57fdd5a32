"""An independent computation of the metrics and breakdowns: plain Python over the documents.

It reads the documents as stored (JSON names, ISO strings) and uses zoneinfo for local time,
sharing no code with the read model, so the property tests compare two separate implementations.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class Query:
    """The filters as a caller gives them, before any normalization."""

    scope: frozenset[str] | None = None
    event_ids: tuple[str, ...] = ()
    date_from: datetime | None = None
    date_to: datetime | None = None
    date_mode: str = "purchase"
    ticket_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    refunded: bool | None = None
    disputed: bool | None = None
    valid: bool | None = None
    referral_codes: tuple[str, ...] = ()
    search: str | None = None


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def matches(document: dict[str, Any], query: Query) -> bool:  # noqa: PLR0911 - one test per filter
    if query.scope is not None and document["eventId"] not in query.scope:
        return False
    if query.event_ids and document["eventId"] not in query.event_ids:
        return False
    when = instant(document["PurchaseDate" if query.date_mode == "purchase" else "TicketRedemptionDateTime"])
    if query.date_from is not None and (when is None or when < query.date_from):
        return False
    if query.date_to is not None and (when is None or when >= query.date_to):
        return False
    if query.ticket_types and not {_squash(t) for t in query.ticket_types} & set(document["ticketTypeList"]):
        return False
    if query.sources and document["sourceBucket"] not in {s.casefold() for s in query.sources}:
        return False
    for flag, field in (
        (query.refunded, "IsRefunded"),
        (query.disputed, "IsDisputed"),
        (query.valid, "IsValid"),
    ):
        if flag is not None and document[field] != flag:
            return False
    if query.referral_codes and document["referralCodeNormalized"] not in {
        _squash(code) for code in query.referral_codes
    }:
        return False
    return not (query.search and _squash(query.search) not in document["searchText"])


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _earliest_busiest(counts: Counter[int]) -> int | None:
    if not counts:
        return None
    return min(counts, key=lambda key: (-counts[key], key))


def metrics(rows: list[dict[str, Any]], time_zone: str) -> dict[str, Any]:
    orders = len(rows)
    tickets = sum(r["TotalTickets"] for r in rows)
    gross = sum(r["TotalAmount"] for r in rows)
    refunded = [r for r in rows if r["IsRefunded"]]
    disputes = sum(1 for r in rows if r["IsDisputed"])
    valid = sum(1 for r in rows if r["IsValid"])
    redeemed = sum(r["TotalTicketRedeemed"] for r in rows)
    online = sum(1 for r in rows if r["sourceBucket"] == "online")
    lags = [
        (instant(r["TicketRedemptionDateTime"]) - instant(r["PurchaseDate"])).total_seconds() / 3600  # type: ignore[operator]
        for r in rows
        if r["TicketRedemptionDateTime"]
    ]
    zone = ZoneInfo(time_zone)
    local = [instant(r["PurchaseDate"]).astimezone(zone) for r in rows]  # type: ignore[union-attr]
    peak_hour = _earliest_busiest(Counter(t.hour for t in local))
    peak_day = _earliest_busiest(Counter(t.weekday() for t in local))
    return {
        "ticketsSold": tickets,
        "ordersCount": orders,
        "grossRevenue": gross,
        "organizerNet": sum(r["OrganizerAmount"] for r in rows),
        "totalFees": sum(r["PlatformFee"] + r["PaymentProviderFee"] + r["TaxFee"] for r in rows),
        "refundCount": len(refunded),
        "refundAmount": sum(r["TotalAmount"] for r in refunded),
        "refundRate": _ratio(len(refunded), orders),
        "disputeCount": disputes,
        "disputeRate": _ratio(disputes, orders),
        "validTicketsCount": valid,
        "validRate": _ratio(valid, orders),
        "totalScans": sum(r["TotalScanCount"] for r in rows),
        "redeemedTickets": redeemed,
        "redemptionRate": _ratio(redeemed, tickets),
        "onlineCount": online,
        "boxOfficeCount": sum(1 for r in rows if r["sourceBucket"] == "boxoffice"),
        "onlineShare": _ratio(online, orders),
        "avgTicketPrice": _ratio(gross, tickets),
        "avgOrderValue": _ratio(gross, orders),
        "avgRedemptionLag": sum(lags) / len(lags) if lags else 0.0,
        "peakPurchaseHour": peak_hour,
        "peakPurchaseDay": None if peak_day is None else WEEKDAYS[peak_day],
    }


def grouped(rows: list[dict[str, Any]], keys_of: Any) -> dict[Any, tuple[int, int, float, float, int]]:
    """key -> (orders, tickets, gross, net, refunds); a row counts once under each of its keys."""
    sums: dict[Any, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0])
    for row in rows:
        for key in keys_of(row):
            entry = sums[key]
            entry[0] += 1
            entry[1] += row["TotalTickets"]
            entry[2] += row["TotalAmount"]
            entry[3] += row["OrganizerAmount"]
            entry[4] += int(row["IsRefunded"])
    return {key: (int(e[0]), int(e[1]), e[2], e[3], int(e[4])) for key, e in sums.items()}


SOURCE_NAMES = {"online": "online", "boxoffice": "boxOffice", "other": "other"}

BREAKDOWN_KEYS = {
    "byTicketType": lambda r: r["ticketTypeList"] or [None],
    "bySource": lambda r: [SOURCE_NAMES[r["sourceBucket"]]],
    "byReferralCode": lambda r: [r["referralCodeNormalized"]],
    "byEvent": lambda r: [r["eventId"]],
    "byDepositStatus": lambda r: [r.get("depositStatus")],
}


def top_connected_account(rows: list[dict[str, Any]]) -> str | None:
    gross: dict[str, float] = defaultdict(float)
    for row in rows:
        if row.get("stripeRouteType") == "connected" and row.get("stripeDestinationAccountId"):
            gross[row["stripeDestinationAccountId"]] += row["TotalAmount"]
    return min(gross, key=lambda account: (-gross[account], account)) if gross else None


def _hour_bucket(moment: datetime) -> tuple[datetime, str]:
    start = moment.replace(minute=0, second=0, microsecond=0)
    offset = moment.utcoffset() or timedelta()
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    name = f"{start.replace(tzinfo=None).isoformat(timespec='seconds')}{sign}{hours:02d}:{rest:02d}"
    return start.replace(tzinfo=None) - offset, name


def time_series(rows: list[dict[str, Any]], *, granularity: str, time_zone: str) -> list[tuple[Any, ...]]:
    zone = ZoneInfo(time_zone)
    buckets: dict[str, list[Any]] = {}
    for row in rows:
        moment = instant(row["PurchaseDate"]).astimezone(zone)  # type: ignore[union-attr]
        if granularity == "hour":
            order, name = _hour_bucket(moment)
        else:
            day: date = moment.date()
            if granularity == "week":
                day -= timedelta(days=day.weekday())
            order, name = datetime.combine(day, datetime.min.time(), tzinfo=UTC), day.isoformat()
        entry = buckets.setdefault(name, [order, 0, 0, 0.0, 0.0])
        entry[1] += 1
        entry[2] += row["TotalTickets"]
        entry[3] += row["TotalAmount"]
        entry[4] += row["OrganizerAmount"]
    ordered = sorted(buckets.items(), key=lambda item: item[1][0].replace(tzinfo=None))
    return [(name, e[1], e[2], e[3], e[4]) for name, e in ordered]
