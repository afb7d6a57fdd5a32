"""Everything one running sandbox holds: the scenario, its paging index, tokens and faults."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from devstack.opentickets.auth import TokenStore
from devstack.opentickets.paging import TransactionIndex
from devstack.sandbox.faults import FaultConfig, FaultController
from devstack.sandbox.settings import build_scenario
from devstack.sandbox.settings import initial_faults as scenario_faults

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.opentickets.settings import SandboxSettings
    from devstack.scenario import Changes


def initial_faults(settings: SandboxSettings) -> FaultConfig:
    """The fault settings the command line asked for (429s included: only this sandbox has them)."""
    return scenario_faults(settings, rate_429=settings.fault_rate_429)


class SandboxState:
    """The sandbox's data and controls; tests reach it through `devstack.opentickets.testing`."""

    def __init__(self, *, settings: SandboxSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.tokens = TokenStore(ttl_seconds=settings.token_ttl, clock=clock)
        self.faults = FaultController(initial_faults(settings))
        self.requests: Counter[str] = Counter()
        self.scenario = build_scenario(settings)
        self.index = TransactionIndex(self.scenario)

    def advance(self, *, minutes: float, refunds: int = 0, disputes: int = 0, scans: int = 0) -> Changes:
        """Move the scenario clock and keep the paging index in step."""
        changes = self.scenario.advance(minutes=minutes, refunds=refunds, disputes=disputes, scans=scans)
        self.index.apply(changes)
        return changes

    def add_order_paid_by(self, paid_order_id: str) -> Changes:
        """Reveal a new order paid by the payment of a visible order, and list it."""
        changes = self.scenario.add_order_paid_by(paid_order_id)
        self.index.apply(changes)
        return changes

    def reset(self) -> None:
        """Back to the start: the seeded scenario and the start-up faults (issued tokens stay valid)."""
        self.scenario = build_scenario(self.settings)
        self.index = TransactionIndex(self.scenario)
        self.faults = FaultController(initial_faults(self.settings))
        self.requests.clear()
