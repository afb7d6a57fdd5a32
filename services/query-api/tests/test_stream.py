"""The stream route on its own: refused until the read side is ready, then events framed as SSE."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from live_fakes import read_event

from otcommon.http import Principal, problem_middleware
from query_api.follower import ReadSideNotReadyError
from query_api.hub import ChangeEvent, ChangeHub
from query_api.stream import add_change_stream, sse_frame


class Readiness:
    def __init__(self) -> None:
        self.error: Exception | None = ReadSideNotReadyError("the read model is catching up")

    async def __call__(self) -> None:
        if self.error is not None:
            raise self.error


async def anyone(_: web.Request) -> Principal:
    return Principal("tester")


async def test_the_stream_is_refused_until_the_read_side_is_ready_then_serves_events():
    hub, readiness = ChangeHub(), Readiness()
    hub.begin_at(0)
    app = web.Application(middlewares=[problem_middleware])
    add_change_stream(app, hub=hub, authenticate=anyone, readiness=readiness, heartbeat_seconds=30)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        refused = await client.get("/api/stream")
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"

        readiness.error = None
        response = await client.get("/api/stream")
        assert response.status == 200
        hub.publish([ChangeEvent(position=3, event_id="a", data='{"kind":"sale"}')])
        async with asyncio.timeout(5):
            event = await read_event(response)
        assert (event.event, event.id, event.json()) == ("change", "3", {"kind": "sale"})
        assert (await client.get("/api/stream?from=1")).status == 400
        response.close()


def test_multi_line_data_is_split_into_data_lines():
    assert (
        sse_frame(data="a\nb", event="change", event_id="7") == b"id: 7\nevent: change\ndata: a\ndata: b\n\n"
    )
