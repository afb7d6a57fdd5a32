"""Start-up settings of the Stripe sandbox (from the command line or a test)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Fixed, published sandbox keys: they guard nothing and tests need to know them.
DEFAULT_SECRET_KEY = "sk_test_opentickets_sandbox"  # noqa: S105
DEFAULT_RESTRICTED_KEY = "rk_test_opentickets_sandbox"
# What the default restricted key may read: enough to find a payment, not enough to trace its payout.
DEFAULT_RESTRICTED_PERMISSIONS = frozenset({"charges", "payment_intents", "balance_transactions"})


class StripeSandboxSettings(BaseModel):
    """Everything the sandbox needs to start; the scenario fields match the OpenTickets sandbox's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65_535)
    # The same four numbers given to the OpenTickets sandbox give the same world.
    seed: int = Field(default=7, ge=0)
    orders: int = Field(default=1_000, ge=0, le=5_000_000)
    events: int = Field(default=6, ge=1, le=1_000)
    organizers: int = Field(default=3, ge=1, le=1_000)
    sales_per_hour: float | None = Field(default=None, gt=0)
    secret_key: str = DEFAULT_SECRET_KEY
    restricted_key: str = DEFAULT_RESTRICTED_KEY
    restricted_permissions: frozenset[str] = DEFAULT_RESTRICTED_PERMISSIONS
    rate_limit_per_second: int = Field(default=25, ge=1, le=100_000)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    fault_rate_5xx: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_seed: int = 0
    # Webhook endpoints for platform events and for Connect events (those of connected accounts).
    webhook_url: str | None = None
    webhook_secret: str = "whsec_opentickets_sandbox"  # noqa: S105 - published sandbox secret
    connect_webhook_url: str | None = None
    connect_webhook_secret: str = "whsec_opentickets_sandbox_connect"  # noqa: S105
    # Seconds before each retry of a failed delivery; after the last one the delivery is given up.
    webhook_retry_delays: tuple[float, ...] = (1.0, 5.0, 25.0)
