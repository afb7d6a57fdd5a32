"""Readiness reports which dependency fails, with a short cause; liveness answers while the process runs."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from otcommon.bus import client_from_connection_string
from otcommon.health import (
    PEEK_TIMEOUT_SECONDS,
    NotReadyCause,
    ServiceBusProbe,
    add_health_routes,
    check_dependencies,
    cosmos_check,
    servicebus_check,
    subscription_check,
)

WAIT_SECONDS = 10.0


async def healthy() -> None:
    return None


async def refused() -> None:
    raise ConnectionError("connection to 10.1.2.3:5671 refused")


async def broken() -> None:
    raise RuntimeError("boom: Endpoint=sb://ns/;SharedAccessKey=abc123")


class Hanging:
    """A check that never answers by itself and records that the bound cut it."""

    def __init__(self) -> None:
        self.cut = asyncio.Event()

    async def __call__(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut.set()
            raise


async def test_report_gives_a_short_cause_per_failing_dependency_and_logs_the_details():
    with capture_logs() as logs:
        report = await check_dependencies(
            {"cosmos": healthy, "servicebus": refused, "stripe": Hanging(), "opentickets": broken},
            per_check_seconds=0.05,
        )

    body = report.to_json()
    assert not report.ok
    assert body["status"] == "unavailable"
    causes = {name: status["cause"] for name, status in body["dependencies"].items()}
    assert causes == {
        "cosmos": None,
        "servicebus": "unreachable",
        "stripe": "timeout",
        "opentickets": "error",
    }
    text = json.dumps(body)
    for detail in ("refused", "10.1.2.3", "ConnectionError", "RuntimeError", "boom", "SharedAccessKey"):
        assert detail not in text
    logged = {entry["dependency"]: entry for entry in logs if entry["event"] == "dependency not ready"}
    assert set(logged) == {"servicebus", "stripe", "opentickets"}
    assert logged["servicebus"]["error_type"] == "ConnectionError"
    assert "refused" in logged["servicebus"]["error"]
    assert logged["opentickets"]["error_type"] == "RuntimeError"
    assert logged["stripe"]["cause"] == "timeout"


async def test_a_slow_check_is_cut_at_its_bound():
    slow = Hanging()

    report = await check_dependencies({"slow": slow}, per_check_seconds=0.01)

    assert slow.cut.is_set()
    assert report.dependencies["slow"].cause is NotReadyCause.TIMEOUT


async def test_endpoints_answer_200_when_ready_and_503_with_causes_when_not():
    ready_app = web.Application()
    add_health_routes(ready_app, {"cosmos": healthy})
    stuck = Hanging()
    failing_app = web.Application()
    # The bound given here is the one /readyz applies: without it the hanging check would never answer.
    checks = {"cosmos": healthy, "servicebus": broken, "stripe": stuck}
    add_health_routes(failing_app, checks, per_check_seconds=0.01)
    async with TestClient(TestServer(ready_app)) as ready, TestClient(TestServer(failing_app)) as failing:
        assert (await ready.get("/healthz")).status == 200
        assert (await failing.get("/healthz")).status == 200
        ready_response = await ready.get("/readyz")
        ready_body = await ready_response.json()
        response = await failing.get("/readyz")
        body = await response.json()

    assert ready_response.status == 200
    assert ready_body["status"] == "ok"
    assert ready_body["dependencies"]["cosmos"]["ok"] is True
    assert response.status == 503
    assert body["status"] == "unavailable"
    assert body["dependencies"]["cosmos"]["ok"] is True
    # Only the short cause: no exception type or text.
    assert set(body["dependencies"]["servicebus"]) == {"ok", "latencyMs", "cause"}
    assert (body["dependencies"]["servicebus"]["ok"], body["dependencies"]["servicebus"]["cause"]) == (
        False,
        "error",
    )
    assert body["dependencies"]["stripe"]["cause"] == "timeout"
    assert stuck.cut.is_set()


class FakeReceiver:
    def __init__(self, *, opened: asyncio.Event | None = None, peek_failures: int = 0) -> None:
        self.opened = opened
        self.peek_failures = peek_failures
        self.peeks: list[dict[str, object]] = []
        self.closed = asyncio.Event()

    async def __aenter__(self):
        if self.opened is not None:
            await self.opened.wait()
        return self

    async def peek_messages(self, **options):
        self.peeks.append(options)
        if self.peek_failures:
            self.peek_failures -= 1
            raise ConnectionResetError("link detached")
        return []

    async def close(self) -> None:
        self.closed.set()


class Receivers:
    """Hands the probe prepared receivers, one per open."""

    def __init__(self, *receivers: FakeReceiver) -> None:
        self.waiting = list(receivers)
        self.handed_out: list[FakeReceiver] = []

    def __call__(self) -> FakeReceiver:
        receiver = self.waiting.pop(0)
        self.handed_out.append(receiver)
        return receiver


async def test_the_probe_keeps_its_receiver_open_and_bounds_each_peek():
    receivers = Receivers(FakeReceiver())
    probe = ServiceBusProbe(receivers)

    for _ in range(3):
        await probe()

    [receiver] = receivers.handed_out
    assert receiver.peeks == [{"max_message_count": 1, "timeout": PEEK_TIMEOUT_SECONDS}] * 3
    assert not receiver.closed.is_set()


async def test_a_probe_cut_while_the_link_opens_leaves_the_open_to_the_next_probe():
    opened = asyncio.Event()
    receivers = Receivers(FakeReceiver(opened=opened))
    probe = ServiceBusProbe(receivers)

    first = await check_dependencies({"servicebus": probe}, per_check_seconds=0.01)
    opened.set()
    second = await check_dependencies({"servicebus": probe}, per_check_seconds=WAIT_SECONDS)

    assert first.dependencies["servicebus"].cause is NotReadyCause.TIMEOUT
    assert second.ok
    assert len(receivers.handed_out) == 1


async def test_a_failed_peek_drops_the_receiver_and_the_next_probe_opens_another():
    receivers = Receivers(FakeReceiver(peek_failures=1), FakeReceiver())
    probe = ServiceBusProbe(receivers)

    failed = await check_dependencies({"servicebus": probe}, per_check_seconds=WAIT_SECONDS)
    recovered = await check_dependencies({"servicebus": probe}, per_check_seconds=WAIT_SECONDS)

    assert failed.dependencies["servicebus"].cause is NotReadyCause.UNREACHABLE
    assert recovered.ok
    first, second = receivers.handed_out
    await asyncio.wait_for(first.closed.wait(), WAIT_SECONDS)
    assert len(second.peeks) == 1


@pytest.mark.integration
async def test_cosmos_check_against_the_real_server(cosmos_client, provisioned, cosmos_connection):
    with capture_logs() as logs:
        report = await check_dependencies(
            {
                "cosmos": cosmos_check(cosmos_client, database=cosmos_connection.database),
                "missing-db": cosmos_check(cosmos_client, database="no-such-database"),
            },
            per_check_seconds=WAIT_SECONDS,
        )
    assert report.dependencies["cosmos"].ok
    assert report.dependencies["missing-db"].cause is NotReadyCause.ERROR
    [entry] = [entry for entry in logs if entry["event"] == "dependency not ready"]
    assert (entry["dependency"], entry["error_type"]) == ("missing-db", "CosmosResourceNotFoundError")


@pytest.mark.integration
async def test_servicebus_checks_against_the_emulator(servicebus_connection_string):
    async with client_from_connection_string(connection_string=servicebus_connection_string) as client:
        with capture_logs() as logs:
            report = await check_dependencies(
                {
                    "queue": servicebus_check(client, queue_name="stripe-enrichment-queue"),
                    "subscription": subscription_check(
                        client, topic_name="transaction-changes", subscription_name="query-api-live"
                    ),
                    "missing-queue": servicebus_check(client, queue_name="no-such-queue"),
                    "missing-subscription": subscription_check(
                        client, topic_name="transaction-changes", subscription_name="no-such-subscription"
                    ),
                },
                per_check_seconds=WAIT_SECONDS,
            )
    assert report.dependencies["queue"].ok, report.to_json()
    assert report.dependencies["subscription"].ok, report.to_json()
    assert report.dependencies["missing-queue"].cause is NotReadyCause.ERROR
    assert report.dependencies["missing-subscription"].cause is NotReadyCause.ERROR
    not_ready = [entry for entry in logs if entry["event"] == "dependency not ready"]
    errors = {entry["dependency"]: entry["error_type"] for entry in not_ready}
    assert errors == {
        "missing-queue": "MessagingEntityNotFoundError",
        "missing-subscription": "MessagingEntityNotFoundError",
    }


@pytest.mark.integration
async def test_readiness_fails_once_service_bus_goes_away(start_servicebus):
    with start_servicebus() as emulator:
        client = client_from_connection_string(connection_string=emulator.connection_string, retry_total=0)
        probe = subscription_check(
            client, topic_name="transaction-changes", subscription_name="query-api-live"
        )
        while_up = await check_dependencies({"servicebus": probe}, per_check_seconds=WAIT_SECONDS)
    # The emulator has stopped; the probe's receiver is still the one it opened while the bus was up.
    async with client:
        while_down = await check_dependencies({"servicebus": probe}, per_check_seconds=WAIT_SECONDS)

    assert while_up.ok, while_up.to_json()
    assert not while_down.ok
    assert while_down.dependencies["servicebus"].cause is not None
