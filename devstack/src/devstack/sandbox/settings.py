"""The start-up settings both sandboxes take: where to listen, which world to serve, which faults."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from devstack.sandbox.faults import FaultConfig
from devstack.scenario import Scenario

if TYPE_CHECKING:
    import argparse


class ScenarioSandboxSettings(BaseModel):
    """Address, scenario and fault fields; each sandbox adds its own. The defaults suit tests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65_535)
    # The same four numbers given to both sandboxes give the same world.
    seed: int = Field(default=7, ge=0)
    orders: int = Field(default=1_000, ge=0, le=5_000_000)
    events: int = Field(default=6, ge=1, le=1_000)
    organizers: int = Field(default=3, ge=1, le=1_000)
    sales_per_hour: float | None = Field(default=None, gt=0)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    fault_rate_5xx: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_seed: int = 0


def build_scenario(settings: ScenarioSandboxSettings) -> Scenario:
    """The scenario the settings describe (the same in both sandboxes, given the same numbers)."""
    return Scenario(
        seed=settings.seed,
        events=settings.events,
        orders=settings.orders,
        organizers=settings.organizers,
        sales_per_hour=settings.sales_per_hour,
    )


def initial_faults(settings: ScenarioSandboxSettings, *, rate_429: float = 0.0) -> FaultConfig:
    """The fault settings the command line asked for."""
    return FaultConfig(
        latency_ms=settings.latency_ms,
        rate_429=rate_429,
        rate_5xx=settings.fault_rate_5xx,
        rate_drop=settings.drop_rate,
        seed=settings.fault_seed,
    )


def add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of the address and the scenario."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=6)
    parser.add_argument("--organizers", type=int, default=3)
    parser.add_argument("--sales-per-hour", type=float, default=None)


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of the start-up faults both sandboxes inject."""
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--fault-rate-5xx", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=0)
