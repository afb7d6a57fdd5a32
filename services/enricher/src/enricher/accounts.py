"""What the enricher reads from Stripe account objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


def account_display_name(*, account: Mapping[str, Any]) -> str:
    """The name shown for an account: business name, else dashboard name, else email, else its id."""
    candidates = (
        _path(account, "business_profile", "name"),
        _path(account, "settings", "dashboard", "display_name"),
        account.get("email"),
    )
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return str(account["id"])


def has_manual_payouts(*, account: Mapping[str, Any]) -> bool:
    """Whether the account is paid out by hand, so no payout can be traced to a payment."""
    return bool(_path(account, "settings", "payouts", "schedule", "interval") == "manual")


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
