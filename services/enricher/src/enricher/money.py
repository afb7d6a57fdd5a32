"""Stripe amounts (integers in the currency's minor unit) as the major-unit numbers the dashboard shows."""

from __future__ import annotations

from decimal import Decimal

ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
        "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    }
)  # fmt: skip
"""Currencies whose Stripe amounts are already whole units (Stripe's published list)."""

THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
"""Currencies whose Stripe amounts count thousandths."""


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places one unit of ``currency`` has in Stripe amounts."""
    code = currency.strip().lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_major_units(*, amount: int | None, currency: str | None) -> float | None:
    """A Stripe minor-unit amount in major units (1099 usd -> 10.99, 500 jpy -> 500.0); None stays None."""
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"a Stripe amount is an integer, got {type(amount).__name__}")
    if not currency:
        raise ValueError("an amount without a currency cannot be converted")
    # Decimal keeps 1099 / 100 exact before the one conversion to the JSON number type.
    return float(Decimal(amount).scaleb(-minor_unit_exponent(currency)))
