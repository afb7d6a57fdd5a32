"""The controls both sandboxes serve (no key needed): liveness, the scenario clock and the faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devstack.sandbox.faults import FaultConfig, FaultController
from devstack.scenario.generator import MAX_ADVANCE_MINUTES, MAX_FORCED_CHANGES
from otcommon.http import invalid_field, parse_json_body, read_json_object

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.scenario import Changes


class ScenarioSandbox(Protocol):
    """What the controls need of a sandbox's state."""

    @property
    def faults(self) -> FaultController:
        """The fault switches (replaced by a reset)."""

    def advance(self, *, minutes: float, refunds: int = 0, disputes: int = 0, scans: int = 0) -> Changes:
        """Move the scenario clock."""


class AdvanceRequest(BaseModel):
    """Body of `POST /_sandbox/advance`."""

    model_config = ConfigDict(extra="forbid")

    minutes: float = Field(ge=0, le=MAX_ADVANCE_MINUTES)
    refunds: int = Field(default=0, ge=0, le=MAX_FORCED_CHANGES)
    disputes: int = Field(default=0, ge=0, le=MAX_FORCED_CHANGES)
    scans: int = Field(default=0, ge=0, le=MAX_FORCED_CHANGES)


def faults_json(faults: FaultController) -> dict[str, Any]:
    """The settings in force and how many faults of each kind were injected."""
    return {"config": faults.config.model_dump(), "injected": dict(faults.injected)}


def control_routes(state_of: Callable[[web.Request], ScenarioSandbox]) -> web.RouteTableDef:
    """`/healthz`, `/_sandbox/advance` and `/_sandbox/faults` over the state ``state_of`` finds."""
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def health(_request: web.Request) -> web.Response:
        """Liveness."""
        return web.json_response({"status": "ok"})

    @routes.post("/_sandbox/advance")
    async def advance(request: web.Request) -> web.Response:
        """Move the scenario clock: new sales, late refunds, disputes and scans (the same in both)."""
        body = await parse_json_body(request, AdvanceRequest)
        changes = state_of(request).advance(
            minutes=body.minutes, refunds=body.refunds, disputes=body.disputes, scans=body.scans
        )
        return web.json_response(
            {"now": changes.now, "newIds": list(changes.new_ids), "updatedIds": list(changes.updated_ids)}
        )

    return _with_fault_routes(routes, lambda request: state_of(request).faults)


def _with_fault_routes(
    routes: web.RouteTableDef, faults_of: Callable[[web.Request], FaultController]
) -> web.RouteTableDef:
    """Read, change and clear the faults of the controller ``faults_of`` finds (a reset replaces it)."""

    def answer(faults: FaultController) -> web.Response:
        return web.json_response(faults_json(faults))

    @routes.get("/_sandbox/faults")
    async def get_faults(request: web.Request) -> web.Response:
        """The fault settings in force and how many faults were injected."""
        return answer(faults_of(request))

    @routes.post("/_sandbox/faults")
    async def set_faults(request: web.Request) -> web.Response:
        """Change some fault settings; fields left out keep their values."""
        faults = faults_of(request)
        body = await read_json_object(request)
        try:
            faults.update(**body)
        except ValidationError as error:
            raise invalid_field(error) from error
        return answer(faults)

    @routes.delete("/_sandbox/faults")
    async def clear_faults(request: web.Request) -> web.Response:
        """Switch every fault off."""
        faults = faults_of(request)
        faults.configure(FaultConfig())
        return answer(faults)

    return routes
