"""The enricher's configuration (``OT_`` and ``OT_STRIPE_`` / ``OT_ENRICHER_`` variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from otcommon.settings import ConfigurationError, ServiceSettings


class EnricherSettings(ServiceSettings):
    """Everything ``python -m enricher`` reads from the environment."""

    stripe_api_key: SecretStr | None = Field(
        default=None, description="Stripe secret or restricted key (read access to the objects enriched)."
    )
    stripe_api_base: str | None = Field(
        default=None,
        description="Stripe API base URL; unset means Stripe itself (set for the local sandbox).",
    )
    stripe_requests_per_second: float = Field(
        default=20.0,
        gt=0,
        description="Process-wide Stripe request rate (Stripe allows 25/s test, 100/s live).",
    )
    stripe_max_network_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of network errors, 409s and 5xx inside one Stripe call."
    )
    stripe_timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request Stripe timeout.")
    enricher_queue: str = Field(
        default="stripe-enrichment-queue", description="Queue of PaymentEnrichmentRequested messages."
    )
    enricher_payout_queue: str = Field(
        default="stripe-events-queue",
        description="Queue of StripePayoutChanged and StripeTransferCreated messages (from webhooks).",
    )
    enricher_changes_topic: str = Field(
        default="transaction-changes", min_length=1, description="Topic of TransactionChanged messages."
    )
    enricher_max_concurrency: int = Field(
        default=16,
        ge=1,
        le=20_000,
        description="Messages handled (and prefetched) at once; a backlog's size for a cold start "
        "(a waiting message costs a future, not a task; its lock renewal starts 20 s before expiry).",
    )
    enricher_coalesce_linger_seconds: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="How long Cosmos DB lookups, reads and writes asked at about the same time wait to go "
        "together (fewer, larger requests in a backlog; each payment waits this long per round).",
    )
    enricher_write_processes: int = Field(
        default=1,
        ge=0,
        le=1,
        description="1: the transactions' lookups and writes run in a child process, on another core "
        "(a backlog is bound by the enricher's CPU otherwise); 0: in the enricher's own process.",
    )
    enricher_shutdown_timeout_seconds: float = Field(
        default=30.0, ge=0, description="How long in-flight messages may finish at shutdown."
    )
    enricher_payout_freshness_seconds: int = Field(
        default=300, ge=0, description="Payout indexes and open payouts are read again after this long."
    )
    enricher_index_overlap_seconds: int = Field(
        default=300, ge=0, description="Listings re-read this far behind their created cursor."
    )
    enricher_http_host: str = Field(default="0.0.0.0", description="HTTP listen address.")  # noqa: S104
    enricher_http_port: int = Field(default=8083, ge=0, le=65535, description="HTTP listen port.")

    def require_stripe_key(self) -> SecretStr:
        """The Stripe key; ConfigurationError naming the variable when it is missing."""
        if self.stripe_api_key is None or not self.stripe_api_key.get_secret_value().strip():
            raise ConfigurationError("invalid configuration:\n  set OT_STRIPE_API_KEY")
        return self.stripe_api_key
