"""Logging masks personal data and carries trace ids; the HTTP middleware adds spans and request ids;
counters reach an OTLP collector."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from otcommon.http import REQUEST_ID_HEADER, request_context_middleware
from otcommon.telemetry import (
    MASK,
    add_trace_context,
    configure_logging,
    configure_metrics,
    mask_personal_data,
)


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The global provider can be set once per process; tests share this one.
    trace.set_tracer_provider(provider)
    return exporter


def test_sensitive_keys_and_emails_in_text_are_masked():
    masked = mask_personal_data(
        None,
        "info",
        {
            "event": "refund for ann@example.com applied",
            "email": "ann@example.com",
            "Phone": "+1 555 0102",
            "name": "Ann",
            "detail": {"connection_string": "Endpoint=sb://x;SharedAccessKey=abc"},
            "note": "key sk_test_51Habc and whsec_abc123 and AccountKey=xyz==;",
            "amount": 12.5,
            "reasons": ["Email: ann@example.com is bad", "call +1 555 010 2030 or (555) 010-2030"],
            "when": "2026-05-01T10:00:00Z order tx-000123 of 1,234.50",
        },
    )
    assert masked["event"] == f"refund for {MASK} applied"
    assert masked["email"] == masked["Phone"] == masked["name"] == MASK
    assert masked["detail"]["connection_string"] == MASK
    assert "sk_test" not in masked["note"]
    assert "whsec_" not in masked["note"]
    assert "xyz" not in masked["note"]
    assert masked["amount"] == 12.5
    assert masked["reasons"] == [f"Email: {MASK} is bad", f"call {MASK} or {MASK}"]
    assert masked["when"] == "2026-05-01T10:00:00Z order tx-000123 of 1,234.50"


def test_trace_ids_are_added_inside_a_span(spans):
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("unit") as span:
        event = add_trace_context(None, "info", {"event": "x"})
    assert event["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert event["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in add_trace_context(None, "info", {"event": "y"})


def test_exception_tracebacks_are_masked(capsys):
    configure_logging(level="INFO", fmt="json", service_name="unit-test")
    try:
        try:
            raise ValueError("no buyer ann@example.com")  # noqa: TRY301 - the point of the test
        except ValueError:
            structlog.get_logger().exception("failed")
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "ann@example.com" not in line["exception"]
    assert "ValueError" in line["exception"]


def test_json_logs_are_masked_and_carry_context(capsys):
    configure_logging(level="INFO", fmt="json", service_name="unit-test")
    try:
        structlog.contextvars.bind_contextvars(event_id="ev1")
        structlog.get_logger().info("buyer updated", email="ann@example.com")
        structlog.get_logger().debug("hidden")
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0]["message"] == "buyer updated"
    assert lines[0]["email"] == MASK
    assert lines[0]["event_id"] == "ev1"
    assert lines[0]["service"] == "unit-test"
    assert lines[0]["level"] == "info"


async def test_middleware_echoes_request_ids_records_spans_and_logs_one_line(spans):
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def missing(_: web.Request) -> web.Response:
        raise web.HTTPNotFound

    app = web.Application(middlewares=[request_context_middleware])
    app.router.add_get("/hello/{name}", hello)
    app.router.add_get("/missing", missing)
    async with TestClient(TestServer(app)) as client:
        with capture_logs() as logs:
            given = await client.get("/hello/ann", headers={REQUEST_ID_HEADER: "req-123"})
            generated = await client.get("/hello/bob")
            not_found = await client.get("/missing")
    assert given.headers[REQUEST_ID_HEADER] == "req-123"
    assert len(generated.headers[REQUEST_ID_HEADER]) == 32
    assert not_found.status == 404
    assert REQUEST_ID_HEADER in not_found.headers
    assert [(log["route"], log["status"]) for log in logs] == [
        ("/hello/{name}", 200),
        ("/hello/{name}", 200),
        ("/missing", 404),
    ]
    names = [span.name for span in spans.get_finished_spans()]
    assert names.count("GET /hello/{name}") == 2


# As a service does: its counters are created at import, before main() configures the export.
EXPORTING_SERVICE = """
import sys
from opentelemetry import metrics
deliveries = metrics.get_meter("otcommon.test").create_counter("otcommon.test.deliveries")
from otcommon.telemetry import configure_metrics
provider = configure_metrics(service_name="telemetry-test", otlp_endpoint=sys.argv[1])
deliveries.add(3, {"outcome": "applied"})
assert provider.force_flush(10_000)
"""


async def test_counters_created_at_import_reach_the_collector_once_an_endpoint_is_set():
    received: list[tuple[str, str, bytes]] = []

    async def collect(request: web.Request) -> web.Response:
        received.append((request.path, request.content_type, await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/metrics", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", EXPORTING_SERVICE, f"http://127.0.0.1:{port}/"
        )
        async with asyncio.timeout(60):
            assert await process.wait() == 0
    finally:
        await runner.cleanup()

    assert received, "nothing reached the collector"
    path, content_type, body = received[0]
    assert (path, content_type) == ("/v1/metrics", "application/x-protobuf")
    export = ExportMetricsServiceRequest.FromString(body)
    [resource] = export.resource_metrics
    assert {"service.name": "telemetry-test"}.items() <= {
        attribute.key: attribute.value.string_value for attribute in resource.resource.attributes
    }.items()
    [metric] = [metric for scope in resource.scope_metrics for metric in scope.metrics]
    assert metric.name == "otcommon.test.deliveries"
    [point] = metric.sum.data_points
    assert point.as_int == 3
    assert [(a.key, a.value.string_value) for a in point.attributes] == [("outcome", "applied")]


def test_without_an_endpoint_no_meter_provider_is_set():
    assert configure_metrics(service_name="telemetry-test", otlp_endpoint=None) is None


_LOGGING_FROM_THREADS = """
import logging, threading, structlog
from otcommon.telemetry import configure_logging
configure_logging(level="INFO", fmt="json", service_name="unit-test")
def through_structlog():
    for n in range(LINES):
        structlog.get_logger().info("from structlog", n=n, padding="x" * 300)
def through_the_standard_library():
    for n in range(LINES):
        logging.getLogger("sdk").warning("from an SDK %d %s", n, "y" * 300)
writers = (through_structlog, through_structlog, through_the_standard_library)
threads = [threading.Thread(target=writer) for writer in writers]
for t in threads: t.start()
for t in threads: t.join()
"""


async def test_lines_logged_at_once_by_threads_stay_whole_lines():
    """structlog and the SDKs' standard-library logging share one stream: no line may break another."""
    lines = 2_000
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LOGGING_FROM_THREADS.replace("LINES", str(lines)),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2_000:]
    logged = [json.loads(line) for line in err.decode().splitlines()]
    assert len(logged) == 3 * lines
    assert sum(line["message"] == "from structlog" for line in logged) == 2 * lines
    assert sum(line["message"].startswith("from an SDK") for line in logged) == lines
