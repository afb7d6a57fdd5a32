"""Start-up settings of the Stripe sandbox (from the command line or a test)."""

from __future__ import annotations

from pydantic import Field

from devstack.sandbox.settings import ScenarioSandboxSettings

# Fixed, published sandbox keys: they guard nothing and tests need to know them.
DEFAULT_SECRET_KEY = "sk_test_opentickets_sandbox"  # noqa: S105
DEFAULT_RESTRICTED_KEY = "rk_test_opentickets_sandbox"
# What the default restricted key may read: enough to find a payment, not enough to trace its payout.
DEFAULT_RESTRICTED_PERMISSIONS = frozenset({"charges", "payment_intents", "balance_transactions"})


class StripeSandboxSettings(ScenarioSandboxSettings):
    """Everything the sandbox needs to start; the scenario fields match the OpenTickets sandbox's."""

    secret_key: str = DEFAULT_SECRET_KEY
    restricted_key: str = DEFAULT_RESTRICTED_KEY
    restricted_permissions: frozenset[str] = DEFAULT_RESTRICTED_PERMISSIONS
    rate_limit_per_second: int = Field(default=25, ge=1, le=100_000)
    # Webhook endpoints for platform events and for Connect events (those of connected accounts).
    webhook_url: str | None = None
    webhook_secret: str = "whsec_opentickets_sandbox"  # noqa: S105 - published sandbox secret
    connect_webhook_url: str | None = None
    connect_webhook_secret: str = "whsec_opentickets_sandbox_connect"  # noqa: S105
    # Seconds before each retry of a failed delivery; after the last one the delivery is given up.
    webhook_retry_delays: tuple[float, ...] = (1.0, 5.0, 25.0)
