"""HTTP routes: run a sync now, and see its progress. Thin: parse, call, raise domain errors."""

from __future__ import annotations

from aiohttp import web

from ingest.coordinator import SyncAlreadyRunningError, SyncCoordinator
from otcommon.http import BearerAuth, ConflictError, Principal, ServiceUnavailableError, query_parameter
from otcommon.schemas import parse_timestamp

SYNC_AUTH = web.AppKey("sync_auth", BearerAuth)
COORDINATOR = web.AppKey("coordinator", SyncCoordinator)

routes = web.RouteTableDef()


def _authenticate(request: web.Request) -> Principal:
    auth = request.app[SYNC_AUTH]
    if not auth.configured:
        raise ServiceUnavailableError(
            "set OT_INGEST_API_TOKEN to enable on-demand syncs", title="Sync endpoint disabled"
        )
    return auth.authenticate(request.headers)


@routes.post("/sync")
async def start_sync(request: web.Request) -> web.Response:
    """Start a sync now (optionally ``?since=ISO`` for a backfill); 202 with the progress URL."""
    _authenticate(request)
    since = query_parameter(request, "since", parse_timestamp)
    coordinator = request.app[COORDINATOR]
    try:
        coordinator.start_now(since=since)
    except SyncAlreadyRunningError as exc:
        raise ConflictError(
            "wait for it: GET /sync",
            title="Sync already running",
            extensions={"progress": coordinator.progress.to_json()},
        ) from exc
    return web.json_response(
        {"status": "started", "progress": coordinator.progress.to_json()},
        status=202,
        headers={"Location": "/sync"},
    )


@routes.get("/sync")
async def sync_status(request: web.Request) -> web.Response:
    """The running or last sync's progress."""
    _authenticate(request)
    coordinator = request.app[COORDINATOR]
    return web.json_response({"running": coordinator.is_running, "progress": coordinator.progress.to_json()})
