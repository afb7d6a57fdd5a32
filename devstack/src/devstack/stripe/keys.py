"""API keys: a secret key, a restricted key with a few read permissions, each revocable at run time."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devstack.opentickets.auth import basic_credentials
from devstack.stripe.errors import StripeError
from otcommon.http import bearer_token, same_secret

if TYPE_CHECKING:
    from collections.abc import Mapping

    from devstack.stripe.settings import StripeSandboxSettings

# Each resource the sandbox serves and the permission Stripe names when a restricted key lacks it.
PERMISSIONS = {
    "accounts": "rak_connected_account_read",
    "application_fees": "rak_application_fee_read",
    "balance_transactions": "rak_balance_transaction_source_read",
    "charges": "rak_charge_read",
    "disputes": "rak_dispute_read",
    "events": "rak_event_read",
    "payment_intents": "rak_payment_intent_read",
    "payouts": "rak_payout_read",
    "refunds": "rak_refund_read",
    "transfers": "rak_transfer_read",
}

_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, "
    "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


class KeyKind(enum.StrEnum):
    """Stripe's two kinds of server-side key."""

    SECRET = "secret"  # noqa: S105 - a kind of key, not a key
    RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key; `permissions` bounds a restricted key (a secret key may read everything)."""

    value: str
    kind: KeyKind
    permissions: frozenset[str]

    @property
    def redacted(self) -> str:
        """The key as Stripe quotes it in errors."""
        return redact(self.value)

    def may_read(self, resource: str) -> bool:
        """Whether this key may read `resource` (a key of `PERMISSIONS`)."""
        return self.kind is KeyKind.SECRET or resource in self.permissions


_SHOWN = 4


def redact(value: str) -> str:
    """A presented key as Stripe quotes it: its prefix and last four characters, the rest starred."""
    if len(value) <= 3 * _SHOWN:
        return "*" * len(value)
    prefix = value[: value.find("_", 3) + 1] or value[:_SHOWN]
    return f"{prefix}{'*' * 12}{value[-_SHOWN:]}"


class KeyRing:
    """The sandbox's keys and which of them are revoked."""

    def __init__(self, settings: StripeSandboxSettings) -> None:
        unknown = settings.restricted_permissions - PERMISSIONS.keys()
        if unknown:
            raise ValueError(f"unknown restricted permissions: {sorted(unknown)}")
        self.keys = (
            ApiKey(settings.secret_key, KeyKind.SECRET, frozenset(PERMISSIONS)),
            ApiKey(settings.restricted_key, KeyKind.RESTRICTED, settings.restricted_permissions),
        )
        self.revoked: set[str] = set()

    def authenticate(self, headers: Mapping[str, str], *, expire_now: bool = False) -> ApiKey:
        """The key a request presents (Bearer, or Basic with the key as user name); else a 401."""
        presented = bearer_token(headers)
        if presented is None:
            credentials = basic_credentials(headers)
            presented = credentials[0] if credentials else None
        if presented is None:
            raise StripeError(_NO_KEY, status=401, should_retry=False)
        found = None
        # Every key is compared, so the time taken does not tell which one came close.
        for key in self.keys:
            if same_secret(presented, key.value):
                found = key
        if found is None:
            raise StripeError(
                f"Invalid API Key provided: {redact(presented)}", status=401, should_retry=False
            )
        if expire_now:
            self.revoked.add(found.value)
        if found.value in self.revoked:
            raise StripeError(
                f"Expired API Key provided: {redact(presented)}", status=401, should_retry=False
            )
        return found

    def revoke(self, value: str) -> bool:
        """Revoke a configured key; False when no configured key has that value."""
        if not any(same_secret(value, key.value) for key in self.keys):
            return False
        self.revoked.add(value)
        return True

    def restore_all(self) -> None:
        """Make every revoked key valid again."""
        self.revoked.clear()


def require_permission(key: ApiKey, resource: str, *, account_id: str) -> None:
    """A 403 shaped as Stripe's when a restricted key lacks the permission for `resource`."""
    if key.may_read(resource):
        return
    raise StripeError(
        f"The provided key '{key.redacted}' does not have the required permissions for this endpoint on "
        f"account '{account_id}'. Having the '{PERMISSIONS[resource]}' permission would allow this request "
        "to continue.",
        status=403,
        should_retry=False,
    )
