"""What the sandbox was asked: calls per endpoint, per account and per status, for tests and benchmarks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestLog:
    """Counts of API calls; an endpoint is `METHOD /path/{template}`, an account the one acted as."""

    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_account_endpoint: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, *, endpoint: str, account: str, status: int | str) -> None:
        """Count one call (`status` is the HTTP status, or `dropped` for a dropped connection)."""
        self.by_endpoint[endpoint] += 1
        self.by_account[account] += 1
        self.by_status[str(status)] += 1
        self.by_account_endpoint[(account, endpoint)] += 1

    @property
    def total(self) -> int:
        """Calls recorded since the last clear."""
        return self.by_endpoint.total()

    def clear(self) -> None:
        """Forget every call."""
        for counter in (self.by_endpoint, self.by_account, self.by_status, self.by_account_endpoint):
            counter.clear()

    def to_json(self) -> dict[str, Any]:
        """The counts as `GET /_sandbox/requests` answers them."""
        per_account: dict[str, dict[str, int]] = {}
        for (account, endpoint), count in sorted(self.by_account_endpoint.items()):
            per_account.setdefault(account, {})[endpoint] = count
        return {
            "total": self.total,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "by_account": dict(sorted(self.by_account.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "by_account_endpoint": per_account,
        }
