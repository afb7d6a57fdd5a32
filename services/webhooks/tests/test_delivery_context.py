"""Every request gets a request id and is counted by status; only answers other than 2xx are logged."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from stripe_fixtures import event, fixture, sign
from structlog.testing import capture_logs
from webhooks_fakes import build_service, counted

from otcommon.http import REQUEST_ID_HEADER
from webhooks.delivery_context import ANSWERS_METRIC, answers_counter

PATH = "/api/webhooks/stripe"


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def answered(reader: InMemoryMetricReader) -> dict[int, int]:
    """``webhooks.http.answers`` so far, by status."""
    return {
        int(dict(attributes)["status"]): value
        for attributes, value in counted(reader, ANSWERS_METRIC).items()
    }


async def send(settings, reader, deliveries: list[tuple[str, dict[str, str]]]):
    answers = answers_counter(MeterProvider(metric_readers=[reader]).get_meter("test"))
    responses = []
    async with TestClient(TestServer(build_service(settings).app(answers))) as client:
        for body, headers in deliveries:
            response = await client.post(PATH, data=body, headers=headers)
            responses.append((response.status, response.headers.get(REQUEST_ID_HEADER)))
    return responses


def refund(n: int) -> str:
    return json.dumps(event("refund.created", fixture("refund"), n=n))


async def test_an_accepted_delivery_is_counted_not_logged(settings, reader):
    bodies = [refund(1), refund(2)]
    with capture_logs() as logs:
        responses = await send(
            settings,
            reader,
            [
                (body, {"Stripe-Signature": sign(body), REQUEST_ID_HEADER: f"req-{n}"})
                for n, body in enumerate(bodies)
            ],
        )
    assert responses == [(200, "req-0"), (200, "req-1")]
    assert [entry for entry in logs if entry["event"] == "request"] == []
    assert answered(reader) == {200: 2}


async def test_a_refused_delivery_is_logged_with_its_status_and_counted(settings, reader):
    body = refund(1)
    with capture_logs() as logs:
        [(status, request_id)] = await send(
            settings, reader, [(body, {"Stripe-Signature": sign(body, "whsec_no")})]
        )
    assert status == 400
    assert request_id is not None
    assert len(request_id) == 32  # generated: Stripe sends none
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert (line["route"], line["status"], line["method"]) == (PATH, 400, "POST")
    assert answered(reader) == {400: 1}


async def test_an_oversized_delivery_is_logged_by_status_without_its_body(settings, reader):
    body = json.dumps(event("refund.created", fixture("refund", metadata={"pad": "secret-pad" * 30_000})))
    with capture_logs() as logs:
        [(status, _)] = await send(settings, reader, [(body, {"Stripe-Signature": sign(body)})])
    assert status == 413
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == 413
    assert "secret-pad" not in repr(logs)
    assert answered(reader) == {413: 1}
