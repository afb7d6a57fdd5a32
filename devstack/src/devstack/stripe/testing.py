"""Run the Stripe sandbox for tests: in-process on a free port, or as a subprocess."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devstack.sandbox.server import serve_in_process
from devstack.stripe.app import create_app
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.state import StripeSandboxState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from devstack.scenario import StripeWorld


class ManualClock:
    """A monotonic clock that moves only when told (`clock.now += 1`): rate-limit windows without sleeps."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class StripeSandboxHandle:
    """A running in-process Stripe sandbox: its URL, keys and data."""

    base_url: str
    state: StripeSandboxState

    @property
    def settings(self) -> StripeSandboxSettings:
        """The settings it was started with (keys included)."""
        return self.state.settings

    @property
    def world(self) -> StripeWorld:
        """The Stripe world it serves now."""
        return self.state.view.world

    @property
    def platform_account_id(self) -> str:
        """The platform's account id."""
        return self.state.platform_account_id


@contextlib.asynccontextmanager
async def run_stripe_sandbox(
    *, settings: StripeSandboxSettings | None = None, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[StripeSandboxHandle]:
    """Serve the sandbox on a free 127.0.0.1 port inside the running event loop."""
    settings = settings or StripeSandboxSettings()
    state = StripeSandboxState(settings=settings, clock=clock)
    async with serve_in_process(create_app(settings, state=state)) as base_url:
        yield StripeSandboxHandle(base_url=base_url, state=state)
