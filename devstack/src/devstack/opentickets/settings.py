"""Start-up settings of the OpenTickets sandbox (from the command line or a test)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SandboxSettings(BaseModel):
    """Everything the sandbox needs to start; the defaults suit tests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65_535)
    seed: int = Field(default=7, ge=0)
    orders: int = Field(default=1_000, ge=0, le=5_000_000)
    events: int = Field(default=6, ge=1, le=1_000)
    organizers: int = Field(default=3, ge=1, le=1_000)
    sales_per_hour: float | None = Field(default=None, gt=0)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    fault_rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_rate_5xx: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_seed: int = 0
    token_ttl: int = Field(default=3_600, ge=1)
    client_id: str = "sandbox-client"
    # Fixed, published sandbox credentials: they guard nothing and tests need to know them.
    client_secret: str = "sandbox-secret"  # noqa: S105
    api_key: str = "sandbox-api-key"
