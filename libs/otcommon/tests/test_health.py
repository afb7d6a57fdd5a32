"""Readiness reports which dependency fails; liveness answers while the process runs."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from otcommon.bus import client_from_connection_string
from otcommon.health import add_health_routes, check_dependencies, cosmos_check, servicebus_check


async def healthy() -> None:
    return None


async def broken() -> None:
    raise ConnectionError("refused")


async def hanging() -> None:
    await asyncio.sleep(10)


async def test_report_names_the_failing_dependency():
    report = await check_dependencies(
        {"cosmos": healthy, "servicebus": broken, "stripe": hanging}, per_check_seconds=0.2
    )
    assert not report.ok
    body = report.to_json()
    assert body["status"] == "unavailable"
    assert body["dependencies"]["cosmos"]["ok"] is True
    assert body["dependencies"]["servicebus"]["error"] == "ConnectionError: refused"
    assert body["dependencies"]["stripe"]["error"] == "no answer within 0.2s"


async def test_endpoints_answer_200_when_ready_and_503_when_not():
    ready_app = web.Application()
    add_health_routes(ready_app, {"cosmos": healthy})
    failing_app = web.Application()
    add_health_routes(failing_app, {"cosmos": healthy, "servicebus": broken})
    async with TestClient(TestServer(ready_app)) as ready, TestClient(TestServer(failing_app)) as failing:
        assert (await ready.get("/healthz")).status == 200
        assert (await ready.get("/readyz")).status == 200
        assert (await failing.get("/healthz")).status == 200
        response = await failing.get("/readyz")
        assert response.status == 503
        assert (await response.json())["dependencies"]["servicebus"]["ok"] is False


@pytest.mark.integration
async def test_cosmos_check_against_the_real_server(cosmos_client, provisioned, cosmos_connection):
    report = await check_dependencies(
        {
            "cosmos": cosmos_check(cosmos_client, database=cosmos_connection.database),
            "missing-db": cosmos_check(cosmos_client, database="no-such-database"),
        }
    )
    assert report.dependencies["cosmos"].ok
    assert not report.dependencies["missing-db"].ok
    assert "NotFound" in (report.dependencies["missing-db"].error or "")


@pytest.mark.integration
async def test_servicebus_check_against_the_emulator(servicebus_connection_string):
    async with client_from_connection_string(connection_string=servicebus_connection_string) as client:
        report = await check_dependencies(
            {
                "servicebus": servicebus_check(client, queue_name="stripe-enrichment-queue"),
                "missing-queue": servicebus_check(client, queue_name="no-such-queue"),
            },
            per_check_seconds=10,
        )
    assert report.dependencies["servicebus"].ok, report.to_json()
    assert not report.dependencies["missing-queue"].ok
    assert "MessagingEntityNotFoundError" in (report.dependencies["missing-queue"].error or "")
