"""``Server-Timing: app;dur=<ms>`` on every answer: the time devtools and the benchmarks read."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from query_api_support import bearer, serving, token
from query_documents import transaction

from query_api.server_timing import SERVER_TIMING, install_server_timing

DOCUMENTS = [transaction(1, event="ev1"), transaction(2, event="ev2")]
# RFC-style metrics with durations in milliseconds: "app;dur=12.3", and "wait;dur=0.4" on answers
# computed from the read model.
TIMING = re.compile(r"^app;dur=(?P<ms>\d+\.\d)(, wait;dur=(?P<wait>\d+\.\d))?$")
FROM_THE_MODEL = {"analytics", "304", "transactions page", "customers page", "transaction", "events"}


class SteppedClock:
    """A clock the handler moves forward, so the duration the header reports is known exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_duration_spans_the_handlers_work_until_the_headers_go_out():
    clock = SteppedClock()

    async def work(_: web.Request) -> web.Response:
        clock.now += 0.25  # the handler's work, as the clock sees it
        return web.json_response({"ok": True})

    async def stream(request: web.Request) -> web.StreamResponse:
        clock.now += 0.125
        response = web.StreamResponse()
        await response.prepare(request)
        clock.now += 10.0  # after the headers went out: not in the figure
        await response.write(b"data")
        return response

    app = web.Application()
    app.middlewares.append(install_server_timing(app, clock=clock))
    app.router.add_get("/work", work)
    app.router.add_get("/stream", stream)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await client.get("/work")
        assert answer.headers[SERVER_TIMING] == "app;dur=250.0"
        streamed = await client.get("/stream")
        assert streamed.headers[SERVER_TIMING] == "app;dur=125.0"
        assert await streamed.read() == b"data"


async def test_every_answer_of_the_query_api_carries_it_errors_and_304_included():
    async with serving(DOCUMENTS) as client:
        headers = bearer(token())
        analytics = await client.get("/api/analytics?include=events", headers=headers)
        unchanged = await client.get(
            "/api/analytics?include=events", headers={**headers, "If-None-Match": analytics.headers["ETag"]}
        )
        answers = {
            "analytics": analytics,
            "304": unchanged,
            "transactions page": await client.get(
                "/api/transactions?q=buyer&sort=TotalAmount", headers=headers
            ),
            "customers page": await client.get("/api/customers", headers=headers),
            "transaction": await client.get("/api/transactions/tx1", headers=headers),
            "events": await client.get("/api/events", headers=headers),
            "401": await client.get("/api/analytics"),
            "400": await client.get("/api/transactions?sort=Secret", headers=headers),
            "404 route": await client.get("/api/nothing-here", headers=headers),
            "healthz": await client.get("/healthz"),
        }
        assert unchanged.status == 304
        for name, answer in answers.items():
            match = TIMING.match(answer.headers.get(SERVER_TIMING, ""))
            assert match is not None, (name, answer.status, answer.headers.get(SERVER_TIMING))
            assert float(match["ms"]) >= 0.0, name
            # Only answers computed from the read model waited for it.
            assert (match["wait"] is not None) == (name in FROM_THE_MODEL), (name, match.group(0))
            if match["wait"] is not None:
                assert float(match["wait"]) <= float(match["ms"]), name
