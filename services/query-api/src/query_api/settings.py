"""The query API's configuration (``OT_`` and ``OT_QUERY_API_*`` variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from otcommon.settings import ServiceSettings
from query_api.auth import TokenRules

MIN_SECRET_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key has at least as many bits as the hash (256)."""
MAX_LIST_VALUES = 100
"""The most values a list parameter may ever carry (the request line is sized for it)."""


class QueryApiSettings(ServiceSettings):
    """Everything ``python -m query_api`` reads from the environment."""

    query_api_http_host: str = Field(default="0.0.0.0", description="HTTP listen address.")  # noqa: S104
    query_api_http_port: int = Field(default=8084, ge=0, le=65535, description="HTTP listen port.")

    query_api_jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 shared secret for local runs (at least 32 bytes); tokens it signed are accepted.",
    )
    query_api_jwks_url: str | None = Field(
        default=None,
        description="JWKS address of the identity provider (Microsoft Entra ID); RS256 tokens are checked "
        "against its keys.",
    )
    query_api_jwt_issuer: str = Field(
        default="opentickets-local", min_length=1, description="Required `iss` of every token."
    )
    query_api_jwt_audience: str = Field(
        default="opentickets-query-api", min_length=1, description="Required `aud` of every token."
    )
    query_api_events_claim: str = Field(
        default="events",
        min_length=1,
        description="Claim holding the event ids a token may see (a list of strings); absent means all.",
    )
    query_api_jwt_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew allowed on `exp` and `nbf`."
    )
    query_api_jwks_refresh_seconds: int = Field(
        default=3600, ge=60, description="Keys are fetched again after this long."
    )
    query_api_jwks_min_refetch_seconds: int = Field(
        default=30,
        ge=0,
        description="A token with an unknown key id fetches the keys again at most this often.",
    )
    query_api_cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Dashboard origins allowed by CORS, comma-separated (e.g. https://dash.example).",
    )
    query_api_analytics_max_age_seconds: int = Field(
        default=10, ge=0, description="Cache-Control max-age of /api/analytics answers."
    )
    query_api_max_date_span_days: int = Field(
        default=3660, ge=1, description="Longest from..to range a request may ask for."
    )
    query_api_max_hourly_span_days: int = Field(
        default=93, ge=1, description="Longest from..to range of an hourly time series (which needs both)."
    )
    query_api_max_list_values: int = Field(
        default=50,
        ge=1,
        le=MAX_LIST_VALUES,
        description="Most values one list parameter (eventId, ticketTypes, ...) may carry.",
    )

    query_api_answer_threads: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Worker threads computing answers beside the event loop (answers at once).",
    )

    query_api_feed_poll_seconds: float = Field(
        default=0.25, gt=0, le=1.0, description="Pause between two reads of the change feed."
    )
    query_api_feed_stale_after_seconds: float = Field(
        default=10.0, gt=0, description="Not ready when the change feed has not been read for this long."
    )
    query_api_stream_heartbeat_seconds: float = Field(
        default=15.0, gt=0, le=60, description="A comment on every idle /api/stream connection this often."
    )
    query_api_stream_replay_events: int = Field(
        default=10_000,
        ge=1,
        description="Recent changes kept for /api/stream clients resuming with Last-Event-ID.",
    )
    query_api_stream_client_queue: int = Field(
        default=1_000,
        ge=1,
        description="Changes queued for one /api/stream client before it is disconnected.",
    )

    @field_validator("query_api_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> QueryApiSettings:
        secret = self.query_api_jwt_secret
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"OT_QUERY_API_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        if secret is None and self.query_api_jwks_url is None:
            raise ValueError("set OT_QUERY_API_JWKS_URL (Entra ID) or OT_QUERY_API_JWT_SECRET (local)")
        if self.query_api_jwks_url is not None and not self.query_api_jwks_url.startswith(
            ("https://", "http://")
        ):
            raise ValueError("OT_QUERY_API_JWKS_URL must be an http(s):// URL")
        return self

    def token_rules(self) -> TokenRules:
        """The issuer, audience and scope claim every token is checked against."""
        return TokenRules(
            issuer=self.query_api_jwt_issuer,
            audience=self.query_api_jwt_audience,
            events_claim=self.query_api_events_claim,
            leeway_seconds=self.query_api_jwt_leeway_seconds,
        )
