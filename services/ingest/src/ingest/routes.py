"""HTTP routes: run a sync now, and see its progress. Thin: parse, call, map errors."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ingest.coordinator import SyncAlreadyRunningError, SyncCoordinator
from ingest.settings import IngestSettings
from otcommon.schemas import parse_timestamp

if TYPE_CHECKING:
    from datetime import datetime

SETTINGS = web.AppKey("settings", IngestSettings)
COORDINATOR = web.AppKey("coordinator", SyncCoordinator)

routes = web.RouteTableDef()


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    """An RFC 9457 problem response: the one shape every error of this API takes."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="ingest"'} if status == 401 else None  # noqa: PLR2004
    return web.json_response(body, status=status, content_type="application/problem+json", headers=headers)


def _authorized(request: web.Request) -> web.Response | None:
    settings = request.app[SETTINGS]
    if settings.ingest_api_token is None:
        return problem(503, "Sync endpoint disabled", "set OT_INGEST_API_TOKEN to enable on-demand syncs")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.ingest_api_token.get_secret_value()
    if scheme.casefold() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return problem(401, "Unauthorized", "send Authorization: Bearer <token>")
    return None


@routes.post("/sync")
async def start_sync(request: web.Request) -> web.Response:
    """Start a sync now (optionally ``?since=ISO`` for a backfill); 202 with the progress URL."""
    if (refused := _authorized(request)) is not None:
        return refused
    since: datetime | None = None
    if "since" in request.query:
        try:
            since = parse_timestamp(request.query["since"])
        except ValueError as exc:
            return problem(400, "Invalid parameter", f"since: {exc}")
    coordinator = request.app[COORDINATOR]
    try:
        coordinator.start_now(since=since)
    except SyncAlreadyRunningError:
        return problem(
            409, "Sync already running", "wait for it: GET /sync", progress=coordinator.progress.to_json()
        )
    return web.json_response(
        {"status": "started", "progress": coordinator.progress.to_json()},
        status=202,
        headers={"Location": "/sync"},
    )


@routes.get("/sync")
async def sync_status(request: web.Request) -> web.Response:
    """The running or last sync's progress."""
    if (refused := _authorized(request)) is not None:
        return refused
    coordinator = request.app[COORDINATOR]
    return web.json_response({"running": coordinator.is_running, "progress": coordinator.progress.to_json()})
