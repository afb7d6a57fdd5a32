"""Logging masks personal data and carries trace ids; the HTTP middleware adds spans and request ids."""

from __future__ import annotations

import json

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from otcommon.http import REQUEST_ID_HEADER, request_context_middleware
from otcommon.telemetry import MASK, add_trace_context, configure_logging, mask_personal_data


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
