"""OpenTickets API sandbox: the seeded scenario behind the API contract in `openapi/opentickets.yaml`."""

from devstack.opentickets.app import create_app
from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.state import SandboxState
from devstack.sandbox.faults import FaultConfig, FaultController

__all__ = ["FaultConfig", "FaultController", "SandboxSettings", "SandboxState", "create_app"]
