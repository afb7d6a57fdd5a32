"""The ingest service's configuration (``OT_`` and ``OT_INGEST_`` variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from ingest.schedule import Schedule
from otcommon.settings import ConfigurationError, ServiceSettings


class IngestSettings(ServiceSettings):
    """Everything ``python -m ingest`` reads from the environment."""

    ingest_schedule: str = Field(
        default="0 0 * * * *", description="NCRONTAB (six fields, seconds first) of scheduled syncs."
    )
    ingest_source_name: str = Field(
        default="opentickets-api", min_length=1, description="Name of the source; keys its checkpoint."
    )
    opentickets_base_url: str = Field(
        default="http://127.0.0.1:8090", description="Base URL of the OpenTickets API."
    )
    opentickets_client_id: str | None = Field(default=None, description="OAuth2 client id.")
    opentickets_client_secret: SecretStr | None = Field(default=None, description="OAuth2 client secret.")
    opentickets_api_key: SecretStr | None = Field(
        default=None, description="API key, the alternative to OAuth2 client credentials."
    )
    opentickets_page_size: int = Field(default=500, ge=1, le=1000, description="Rows per API page.")
    opentickets_timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request timeout.")
    opentickets_max_attempts: int = Field(default=8, ge=1, description="Attempts per request before failing.")
    ingest_overlap_seconds: int = Field(
        default=300, ge=0, description="Re-read this much before the checkpoint (late or equal updatedAt)."
    )
    ingest_write_concurrency: int = Field(default=16, ge=1, le=256, description="Parallel Cosmos writes.")
    ingest_enrichment_queue: str = Field(
        default="stripe-enrichment-queue", description="Queue of PaymentEnrichmentRequested messages."
    )
    ingest_publish_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts to publish to Service Bus before a run fails (each with SDK retries).",
    )
    ingest_lease_seconds: int = Field(
        default=60, ge=5, description="Sync lease lifetime; another replica takes over after it expires."
    )
    ingest_http_host: str = Field(default="0.0.0.0", description="HTTP listen address.")  # noqa: S104
    ingest_http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP listen port.")
    ingest_api_token: SecretStr | None = Field(
        default=None, description="Bearer token for POST /sync; without one the endpoint is refused."
    )
    ingest_api_previous_token: SecretStr | None = Field(
        default=None,
        description="Also accepted while clients move to a new OT_INGEST_API_TOKEN (rotation); then unset.",
    )

    @field_validator("ingest_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return Schedule.parse(value).expression

    def require_source_credentials(self) -> None:
        """Commands that read the API need credentials: ConfigurationError naming the variables."""
        has_client = bool(self.opentickets_client_id and self.opentickets_client_secret)
        if self.opentickets_api_key is None and not has_client:
            raise ConfigurationError(
                "invalid configuration:\n  set OT_OPENTICKETS_CLIENT_ID and OT_OPENTICKETS_CLIENT_SECRET, "
                "or OT_OPENTICKETS_API_KEY"
            )

    @property
    def schedule(self) -> Schedule:
        """The parsed sync schedule."""
        return Schedule.parse(self.ingest_schedule)
