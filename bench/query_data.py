"""Generated transaction documents for the query benchmark, built column by column (no Python loop).

The shapes follow SPEC section 2: events of different sizes and time zones, buyers who come back,
orders of several ticket types, box-office sales (some paid cash, without a PaymentID), refunds,
disputes, referral codes in mixed case, redemptions on the event's day, Stripe enrichment on part
of the payments. Pseudo-random draws are hashes of the row number with a fixed seed, so the same
arguments always give the same rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import polars as pl

TIMESTAMP: Final = "%Y-%m-%dT%H:%M:%S%.3fZ"
EVENT_TIME_ZONES: Final = (
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Adelaide",
    "Asia/Kathmandu",
    "UTC",
)
EVENT_UTC_OFFSET_HOURS: Final = (1, -5, 5.5, 9.5, 5.75, 0)
"""The zones' usual offsets: purchases peak in the buyer's evening, so the busy UTC hour differs."""
TICKET_TYPES: Final = ("General", "VIP", "Student", "VIP (Meet, Greet)", "Early Bird", "Balcony")
TYPE_PRICES: Final = (35.0, 120.0, 20.0, 250.0, 28.0, 55.0)
FIRST_NAMES: Final = ("Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "José", "Kai", "Lea")
LAST_NAMES: Final = ("Lima", "Smith", "Okafor", "Müller", "Tanaka", "Rossi", "Novak", "Silva", "Kim", "Berg")
REFERRAL_CODES: Final = ("SUMMER", "summer", " Friends ", "VIP10", "radio", "EARLY", "tiktok", "PRESS")
SOURCES: Final = ("online", "Box Office", "boxoffice", "kiosk", "Phone")
ACCOUNTS: Final = 20
SALE_DAYS: Final = 90
FIRST_EVENT_DAY: Final = datetime(2026, 3, 1, tzinfo=UTC)
_UNIT: Final = 2.0**64


def _draw(rows: pl.Expr, seed: int, salt: int) -> pl.Expr:
    """A uniform float in [0, 1) per row, the same for the same seed, salt and row."""
    return (rows + salt * 1_000_003).hash(seed).cast(pl.Float64) / _UNIT


def _pick(values: tuple[str, ...], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(values)).gather(index)


def _event_columns(u_event: pl.Expr, events: int) -> list[pl.Expr]:
    # Event sizes vary about 10x: the square skews the draw toward the first events.
    event = (u_event * u_event * events).floor().cast(pl.Int64).clip(0, events - 1)
    return [
        event.alias("_event"),
        pl.format("event-{}", event.cast(pl.String).str.zfill(3)).alias("eventId"),
        pl.format("Tour {}: City {}", (event // 10 + 1), event).alias("EventName"),
    ]


def generate(
    rows: int, *, events: int = 50, seed: int = 11, start: int = 0, count: int | None = None
) -> pl.DataFrame:
    """Rows ``start`` to ``start + count`` of ``rows`` stored transaction documents, as a frame with the
    documents' JSON field names (the same rows whichever slices they are generated in)."""
    stop = rows if count is None else min(rows, start + count)
    n = pl.int_range(start, stop, dtype=pl.UInt64)
    u = [_draw(n, seed, salt) for salt in range(24)]
    base = pl.select(n.alias("_n"), *_event_columns(u[0], events)).with_columns(
        *(u[i].alias(f"_u{i}") for i in range(1, 24))
    )
    return _documents(base, rows)


def _documents(base: pl.DataFrame, rows: int) -> pl.DataFrame:
    col = pl.col
    buyer = (col("_u1") * max(rows // 2.5, 1)).cast(pl.Int64)
    first = _pick(FIRST_NAMES, buyer % len(FIRST_NAMES))
    last = _pick(LAST_NAMES, (buyer // len(FIRST_NAMES)) % len(LAST_NAMES))
    has_email = col("_u2") < 0.9  # noqa: PLR2004
    has_phone = col("_u2") > 0.6  # noqa: PLR2004
    type_a = (col("_u3") * col("_u3") * len(TICKET_TYPES)).cast(pl.Int64)
    type_b = (type_a + 1 + (col("_u4") * (len(TICKET_TYPES) - 1)).cast(pl.Int64)) % len(TICKET_TYPES)
    several = col("_u4") < 0.15  # noqa: PLR2004
    tickets = (1 + (col("_u5") ** 3 * 6)).cast(pl.Int64)
    price = _pick_float(TYPE_PRICES, type_a)
    amount = (tickets * price * pl.when(several).then(1.2).otherwise(1.0)).round(2)
    source_index = pl.when(col("_u6") < 0.75).then(0).otherwise((col("_u6") * 37).cast(pl.Int64) % 4 + 1)  # noqa: PLR2004
    source = _pick(SOURCES, source_index)
    bucket = (
        pl.when(source_index == 0).then(pl.lit("online")).when(source_index <= 2).then(pl.lit("boxoffice"))  # noqa: PLR2004
    )
    cash = (source_index > 0) & (col("_u7") < 0.3)  # noqa: PLR2004
    refunded = col("_u8") < 0.04  # noqa: PLR2004
    disputed = (col("_u9") < 0.006) & ~cash  # noqa: PLR2004
    event_day = FIRST_EVENT_DAY.timestamp() * 1000 + col("_event") * 5 * 86_400_000
    offset_hours = _pick_float(EVENT_UTC_OFFSET_HOURS, col("_event") % len(EVENT_UTC_OFFSET_HOURS))
    # Purchases: within SALE_DAYS before the event, busiest in the local evening.
    local_hour = 8 + col("_u10") * col("_u10") * 16
    purchase_ms = (
        event_day
        - (1 + (col("_u11") * SALE_DAYS).floor()) * 86_400_000
        + ((local_hour - offset_hours) * 3_600_000).cast(pl.Int64)
        + (col("_u12") * 3_600_000).cast(pl.Int64)
    ).cast(pl.Int64)
    redeemed = ~refunded & (col("_u13") < 0.6)  # noqa: PLR2004
    redeemed_ms = event_day + 17 * 3_600_000 + (col("_u14") * 4 * 3_600_000).cast(pl.Int64)
    has_code = col("_u15") < 0.2  # noqa: PLR2004
    code = _pick(REFERRAL_CODES, (col("_u16") * len(REFERRAL_CODES)).cast(pl.Int64))
    enriched = ~cash & (col("_u17") < 0.8)  # noqa: PLR2004
    connected = enriched & (col("_u18") < 0.7)  # noqa: PLR2004
    account = (col("_u19") * ACCOUNTS).cast(pl.Int64)
    fees_platform = (amount * 0.05).round(2)
    fees_provider = pl.when(cash).then(0.0).otherwise((amount * 0.029 + 0.3).round(2))
    fees_tax = (amount * 0.08).round(2)
    ticket_id = pl.format("T{}", col("_n"))
    payment_id = pl.when(cash).then(pl.lit("")).otherwise(pl.format("pi_{}", col("_n").hash(5)))
    name = pl.format("{} {}", first, last)
    email = pl.when(has_email).then(pl.format("{}.{}{}@example.com", first, last, buyer).str.to_lowercase())
    phone = pl.when(has_phone).then(pl.format("+1 555 {}", (buyer % 10_000_000).cast(pl.String).str.zfill(7)))
    types_text = pl.when(several).then(
        pl.format("{}, {}", _pick(TICKET_TYPES, type_a), _pick(TICKET_TYPES, type_b))
    )
    types_text = types_text.otherwise(_pick(TICKET_TYPES, type_a))
    frame = base.with_columns(
        name.alias("Name"),
        email.alias("Email"),
        phone.alias("Phone"),
        types_text.alias("TicketTypes"),
        several.alias("_several"),
        type_a.alias("_typeA"),
        type_b.alias("_typeB"),
        tickets.alias("TotalTickets"),
        amount.alias("TotalAmount"),
        pl.from_epoch(purchase_ms, time_unit="ms").dt.strftime(TIMESTAMP).alias("PurchaseDate"),
        source.alias("PurchaseFrom"),
        bucket.otherwise(pl.lit("other")).alias("sourceBucket"),
        refunded.alias("IsRefunded"),
        pl.when(refunded).then(pl.lit("Customer request")).alias("RefundedRemarks"),
        (~refunded & (col("_u20") > 0.01)).alias("IsValid"),  # noqa: PLR2004
        disputed.alias("IsDisputed"),
        pl.when(has_code).then(code).alias("ReferralCode"),
        pl.when(has_code).then(code.str.strip_chars().str.to_lowercase()).alias("referralCodeNormalized"),
        pl.when(has_code).then(10.0).alias("ReferralCodeDiscount"),
        pl.when(has_code).then(pl.lit("%")).alias("ReferralCodeDiscountType"),
        pl.when(cash).then(pl.lit("cash")).otherwise(pl.lit("card")).alias("PaymentMethod"),
        payment_id.alias("PaymentID"),
        pl.when(redeemed).then(tickets).otherwise(0).alias("TotalScanCount"),
        pl.when(redeemed).then(tickets).otherwise(0).alias("TotalTicketRedeemed"),
        pl.when(redeemed)
        .then(pl.from_epoch(redeemed_ms, time_unit="ms").dt.strftime(TIMESTAMP))
        .alias("TicketWasLastScannedTime"),
        pl.when(redeemed)
        .then(pl.from_epoch(redeemed_ms, time_unit="ms").dt.strftime(TIMESTAMP))
        .alias("TicketRedemptionDateTime"),
        fees_platform.alias("PlatformFee"),
        fees_provider.alias("PaymentProviderFee"),
        fees_tax.alias("TaxFee"),
        (amount - fees_platform - fees_provider - fees_tax).round(2).alias("OrganizerAmount"),
        pl.when(enriched)
        .then(pl.when(connected).then(pl.lit("connected")).otherwise(pl.lit("platform")))
        .alias("stripeRouteType"),
        pl.when(connected).then(pl.format("acct_{}", account)).alias("stripeDestinationAccountId"),
        pl.when(connected).then(pl.format("Organizer {}", account)).alias("stripeDestinationAccountName"),
        pl.when(enriched)
        .then(
            _pick(
                ("paid", "paid", "paid", "pending", "failed", "not_traceable"),
                (col("_u21") * 6).cast(pl.Int64),
            )
        )
        .alias("depositStatus"),
        pl.when(cash)
        .then(None)
        .when(enriched)
        .then(pl.lit("enriched"))
        .when(col("_u22") < 0.5)  # noqa: PLR2004
        .then(pl.lit("unresolved"))
        .otherwise(pl.lit("pending"))
        .alias("enrichmentState"),
        ticket_id.alias("ticketId"),
        pl.format("tx{}", col("_n").hash(3)).alias("id"),
        pl.lit("api").alias("source"),
        pl.col("_n").cast(pl.Int64).alias("SN"),
        (1_780_000_000 + col("_n").cast(pl.Int64) // 100).alias("_ts"),
    )
    return frame.with_columns(
        pl.when(col("_several"))
        .then(pl.concat_list(_pick(TICKET_TYPES, col("_typeA")), _pick(TICKET_TYPES, col("_typeB"))))
        .otherwise(pl.concat_list(_pick(TICKET_TYPES, col("_typeA"))))
        .list.eval(pl.element().str.to_lowercase())
        .list.unique(maintain_order=True)
        .alias("ticketTypeList"),
        _customer_key().alias("customerKey"),
        pl.concat_str(
            [
                pl.when(pl.col(c) != "").then(pl.col(c).str.to_lowercase())
                for c in ("Name", "Email", "Phone", "PaymentID", "ticketId")
            ],
            separator="\n",
            ignore_nulls=True,
        ).alias("searchText"),
        pl.format('"{}"', col("_n").hash(9)).alias("_etag"),
    ).select(pl.exclude("^_(n|event|u\\d+|several|typeA|typeB)$"))


def _customer_key() -> pl.Expr:
    email = pl.col("Email").str.to_lowercase()
    digits = pl.col("Phone").str.replace_all(r"\D", "")
    name = pl.col("Name").str.to_lowercase()
    return (
        pl.when(email.is_not_null())
        .then(pl.format("email:{}", email))
        .when(digits.is_not_null())
        .then(pl.format("phone:{}", digits))
        .otherwise(pl.format("name:{}", name))
    )


def _pick_float(values: tuple[float, ...], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(values, dtype=pl.Float64)).gather(index)
