"""`/_sandbox/faults`: read, change and clear a sandbox's injected faults (both sandboxes serve it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from devstack.opentickets.faults import FaultConfig, FaultController
from otcommon.http import invalid_field, read_json_object

if TYPE_CHECKING:
    from collections.abc import Callable


def faults_json(faults: FaultController) -> dict[str, Any]:
    """The settings in force and how many faults of each kind were injected."""
    return {"config": faults.config.model_dump(), "injected": dict(faults.injected)}


def fault_routes(faults_of: Callable[[web.Request], FaultController]) -> web.RouteTableDef:
    """The routes over the controller ``faults_of`` finds for a request (a reset replaces it)."""
    routes = web.RouteTableDef()

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
