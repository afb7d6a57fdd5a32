# ruff: noqa: S311 - seeded, reproducible pseudo-randomness is the point; nothing here is a secret
"""Switchable faults: latency, 429, 5xx, dropped connections and expired tokens.

Two ways to ask for a fault, both deterministic: counters ("fail the next N requests") and rates
drawn from a seeded random stream (the same seed and request sequence give the same faults).
"""

from __future__ import annotations

import enum
import random
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_COUNTER = 1_000_000


class FaultConfig(BaseModel):
    """The fault settings; every field can be changed at run time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    rate_5xx: float = Field(default=0.0, ge=0.0, le=1.0)
    rate_drop: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: int = Field(default=1, ge=0, le=3_600)
    status_5xx: int = Field(default=503, ge=500, le=599)
    next_429: int = Field(default=0, ge=0, le=MAX_COUNTER)
    next_5xx: int = Field(default=0, ge=0, le=MAX_COUNTER)
    next_drop: int = Field(default=0, ge=0, le=MAX_COUNTER)
    next_expired_token: int = Field(default=0, ge=0, le=MAX_COUNTER)
    seed: int = 0

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultConfig:
        if self.rate_429 + self.rate_5xx + self.rate_drop > 1.0:
            raise ValueError("rate_429 + rate_5xx + rate_drop must not exceed 1")
        return self


class Fault(enum.StrEnum):
    """What happens to one request."""

    NONE = "none"
    TOO_MANY_REQUESTS = "429"
    SERVER_ERROR = "5xx"
    DROP = "drop"
    EXPIRED_TOKEN = "expired_token"  # noqa: S105 - a fault's name, not a password


class FaultController:
    """Decides, request by request, which fault to inject."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.injected: Counter[str] = Counter()
        self._config = FaultConfig()
        self._rng = random.Random()
        self._counters: dict[Fault, int] = {}
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        """The settings in force, with the counters as they stand now."""
        return self._config.model_copy(
            update={
                "next_drop": self._counters[Fault.DROP],
                "next_429": self._counters[Fault.TOO_MANY_REQUESTS],
                "next_5xx": self._counters[Fault.SERVER_ERROR],
                "next_expired_token": self._counters[Fault.EXPIRED_TOKEN],
            }
        )

    def configure(self, config: FaultConfig) -> None:
        """Replace the settings; the random stream restarts from the configured seed."""
        self._config = config
        self._rng = random.Random(config.seed)
        self._counters = {
            Fault.DROP: config.next_drop,
            Fault.TOO_MANY_REQUESTS: config.next_429,
            Fault.SERVER_ERROR: config.next_5xx,
            Fault.EXPIRED_TOKEN: config.next_expired_token,
        }

    def update(self, **changes: object) -> FaultConfig:
        """Change some settings, keeping the others; returns the new settings."""
        merged = FaultConfig.model_validate({**self.config.model_dump(), **changes})
        self.configure(merged)
        return merged

    def next_request_fault(self) -> Fault:
        """The fault for the next API request (counters first, then the seeded rates)."""
        for fault in (Fault.DROP, Fault.TOO_MANY_REQUESTS, Fault.SERVER_ERROR):
            if self._counters[fault] > 0:
                self._counters[fault] -= 1
                self.injected[fault] += 1
                return fault
        config = self._config
        if config.rate_drop or config.rate_429 or config.rate_5xx:
            draw = self._rng.random()
            for fault, rate in (
                (Fault.DROP, config.rate_drop),
                (Fault.TOO_MANY_REQUESTS, config.rate_429),
                (Fault.SERVER_ERROR, config.rate_5xx),
            ):
                if draw < rate:
                    self.injected[fault] += 1
                    return fault
                draw -= rate
        return Fault.NONE

    def take_expired_token(self) -> bool:
        """Whether this bearer-authenticated request should find its token expired."""
        if self._counters[Fault.EXPIRED_TOKEN] > 0:
            self._counters[Fault.EXPIRED_TOKEN] -= 1
            self.injected[Fault.EXPIRED_TOKEN] += 1
            return True
        return False
