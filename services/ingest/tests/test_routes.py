"""The HTTP endpoints: authentication, on-demand sync with progress, conflicts, health."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ingest_fakes import World, api_row, container

from ingest.app import Ingest, create_app
from ingest.coordinator import SyncCoordinator
from ingest.lease import SyncLease
from ingest.schedule import Schedule
from ingest.settings import IngestSettings
from otcommon.http import PROBLEM_TYPE_BASE

TOKEN = "s3cret-token"


def settings(**overrides) -> IngestSettings:
    values = {
        "cosmos_endpoint": "http://127.0.0.1:1/",
        "servicebus_connection_string": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;",
        "ingest_api_token": TOKEN,
        # Far in the future: only on-demand syncs run in these tests.
        "ingest_schedule": "0 0 0 1 1 *",
    }
    values.update(overrides)
    return IngestSettings(**values)


@pytest.fixture
def app_for(world: World):
    def build(config: IngestSettings):
        lease = SyncLease(container("state"), name="sync:test", holder="me", duration_seconds=30)
        coordinator = SyncCoordinator(
            runner=world.runner, lease=lease, schedule=Schedule.parse(config.ingest_schedule)
        )

        async def healthy() -> None:
            return None

        @contextlib.asynccontextmanager
        async def components(_: IngestSettings):
            yield Ingest(
                coordinator=coordinator,
                importer=world.importer,
                queue=world.queue,
                runner=world.runner,
                health_checks={"cosmos": healthy},
            )

        return create_app(config, open_components=components), coordinator

    return build


async def test_sync_needs_the_bearer_token(app_for):
    app, _ = app_for(settings())
    async with TestClient(TestServer(app)) as client:
        missing = await client.post("/sync")
        wrong = await client.post("/sync", headers={"Authorization": "Bearer nope"})
        status = await client.get("/sync")
        missing_body = await missing.json(content_type=None)
    assert missing.status == wrong.status == status.status == 401
    assert missing.content_type == "application/problem+json"
    assert missing_body["title"] == "Unauthorized"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ingest"'
    assert wrong.headers["WWW-Authenticate"].startswith('Bearer realm="ingest", error="invalid_token"')


async def test_a_rotated_out_token_stays_valid_until_it_is_unset(app_for):
    app, _ = app_for(settings(ingest_api_token="new-token", ingest_api_previous_token="old-token"))
    async with TestClient(TestServer(app)) as client:
        new = await client.get("/sync", headers={"Authorization": "Bearer new-token"})
        old = await client.get("/sync", headers={"Authorization": "Bearer old-token"})
        other = await client.get("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (new.status, old.status, other.status) == (200, 200, 401)


async def test_without_a_configured_token_the_endpoint_is_disabled(app_for):
    app, _ = app_for(settings(ingest_api_token=None, ingest_api_previous_token=TOKEN))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
        body = await response.json(content_type=None)
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert body["title"] == "Sync endpoint disabled"
    assert "OT_INGEST_API_TOKEN" in body["detail"]


async def test_on_demand_sync_runs_and_reports_progress(app_for, world: World):
    world.source.put(*(api_row(n) for n in range(1, 6)))
    app, coordinator = app_for(settings())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(app)) as client:
        started = await client.post("/sync", headers=auth)
        assert started.status == 202
        assert started.headers["Location"] == "/sync"
        async with asyncio.timeout(10):
            await coordinator.wait_idle()
        body = await (await client.get("/sync", headers=auth)).json()
        health = await client.get("/readyz")
        readiness = await health.json()
    assert body["running"] is False
    assert (body["progress"]["state"], body["progress"]["created"]) == ("completed", 5)
    # Ready because the components' checks ran and passed, not because no check was wired in.
    assert health.status == 200
    assert readiness["dependencies"]["cosmos"]["ok"] is True


async def test_a_second_request_while_running_is_a_conflict(app_for, world: World):
    world.source.put(*(api_row(n) for n in range(1, 6)))
    world.source.gate = asyncio.Event()
    app, coordinator = app_for(settings())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/sync", headers=auth)).status == 202
        conflict = await client.post("/sync", headers=auth)
        body = await conflict.json(content_type=None)
        world.source.gate.set()
        async with asyncio.timeout(10):
            await coordinator.wait_idle()
    assert conflict.status == 409
    assert conflict.content_type == "application/problem+json"
    assert body["title"] == "Sync already running"
    assert body["type"] == PROBLEM_TYPE_BASE + "conflict"
    assert body["progress"]["state"] == "running"


async def test_a_bad_backfill_date_is_a_400_naming_it(app_for):
    app, _ = app_for(settings())
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/sync?since=yesterday", headers={"Authorization": f"Bearer {TOKEN}"})
        body = await response.json(content_type=None)
    assert response.status == 400
    assert body["title"] == "Invalid parameter: since"
    assert body["detail"].startswith("since:")


async def test_unknown_routes_and_methods_are_problems(app_for):
    app, _ = app_for(settings())
    async with TestClient(TestServer(app)) as client:
        missing = await client.get("/nothing")
        wrong_method = await client.delete("/sync")
    assert (missing.status, wrong_method.status) == (404, 405)
    assert missing.content_type == wrong_method.content_type == "application/problem+json"
