"""Start-up settings of the OpenTickets sandbox (from the command line or a test)."""

from __future__ import annotations

from pydantic import Field

from devstack.sandbox.settings import ScenarioSandboxSettings


class SandboxSettings(ScenarioSandboxSettings):
    """Everything the sandbox needs to start; the defaults suit tests."""

    fault_rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    token_ttl: int = Field(default=3_600, ge=1)
    client_id: str = "sandbox-client"
    # Fixed, published sandbox credentials: they guard nothing and tests need to know them.
    client_secret: str = "sandbox-secret"  # noqa: S105
    api_key: str = "sandbox-api-key"
