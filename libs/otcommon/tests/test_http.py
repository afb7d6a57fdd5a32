"""The HTTP toolkit: domain errors become problem+json, failures leak nothing, bearer tokens, parsing."""

from __future__ import annotations

import asyncio
import hmac
from contextlib import asynccontextmanager

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field
from structlog.testing import capture_logs

from otcommon.http import (
    PROBLEM_TYPE_BASE,
    REQUEST_ID_HEADER,
    SERVICE_MIDDLEWARES,
    BearerAuth,
    ConflictError,
    ForbiddenError,
    InvalidParameterError,
    NotFoundError,
    Principal,
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    parse_json_body,
    query_parameter,
    read_json_object,
    reject_unknown_parameters,
)

PROBLEM_JSON = "application/problem+json"


@asynccontextmanager
async def serve(*routes: web.RouteDef):
    app = web.Application(middlewares=SERVICE_MIDDLEWARES)
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        yield client


def raising(error: BaseException):
    async def handler(_: web.Request) -> web.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "status", "title", "slug"),
    [
        (
            InvalidParameterError("limit", "limit must be positive"),
            400,
            "Invalid parameter: limit",
            "invalid-parameter",
        ),
        (UnauthorizedError("no token", realm="ingest"), 401, "Unauthorized", "unauthorized"),
        (ForbiddenError("not your event"), 403, "Forbidden", "forbidden"),
        (NotFoundError("no event 'ev9'", title="Unknown event"), 404, "Unknown event", "not-found"),
        (ConflictError("one runs"), 409, "Conflict", "conflict"),
        (TooManyRequestsError("slow down", retry_after_seconds=3), 429, "Too Many Requests", "rate-limited"),
        (ServiceUnavailableError("disabled"), 503, "Service Unavailable", "unavailable"),
    ],
)
async def test_a_raised_domain_error_is_its_problem_document(error, status, title, slug):
    async with serve(web.get("/thing", raising(error))) as client:
        response = await client.get("/thing")
        body = await response.json(content_type=None)
    assert response.status == status
    assert response.content_type == PROBLEM_JSON
    assert body["type"] == PROBLEM_TYPE_BASE + slug
    assert (body["title"], body["status"], body["detail"]) == (title, status, error.detail)


async def test_problems_carry_their_headers_and_extension_members():
    progress = {"state": "running", "pages": 2}
    async with serve(
        web.get("/conflict", raising(ConflictError("wait", title="Busy", extensions={"progress": progress}))),
        web.get("/limited", raising(TooManyRequestsError("slow down", retry_after_seconds=7))),
        web.get("/down", raising(ServiceUnavailableError("restarting", retry_after_seconds=30))),
        web.get("/param", raising(InvalidParameterError("since", "since: not a date"))),
    ) as client:
        conflict = await client.get("/conflict")
        limited = await client.get("/limited")
        down = await client.get("/down")
        param = await client.get("/param")
        assert (await conflict.json(content_type=None))["progress"] == progress
        assert limited.headers["Retry-After"] == "7"
        assert down.headers["Retry-After"] == "30"
        assert (await param.json(content_type=None))["parameter"] == "since"


def test_extension_members_cannot_replace_standard_ones():
    with pytest.raises(ValueError, match="status"):
        ConflictError("x", extensions={"status": 200})


async def test_an_unexpected_failure_is_a_500_that_tells_nothing_and_is_logged():
    secret = "db password hunter2 for ann@example.com"
    async with serve(web.get("/boom", raising(RuntimeError(secret)))) as client:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            response = await client.get("/boom", headers={REQUEST_ID_HEADER: "req-500"})
        text = await response.text()
    assert response.status == 500
    assert response.content_type == PROBLEM_JSON
    assert "hunter2" not in text
    assert "RuntimeError" not in text
    body = await response.json(content_type=None)
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["title"] == "Internal Server Error"
    assert response.headers[REQUEST_ID_HEADER] == "req-500"
    [failure] = [log for log in logs if log["event"] == "request failed"]
    assert failure["exc_info"] is True
    assert failure["log_level"] == "error"
    assert failure["request_id"] == "req-500"
    [summary] = [log for log in logs if log["event"] == "request"]
    assert summary["status"] == 500


async def test_a_cancelled_handler_is_logged_as_client_closed_not_as_a_failure():
    # aiohttp cancels a handler when the server stops (or, with handler cancellation on, when the
    # client leaves): no answer goes out, and the summary must not count it as a server error.
    async with serve(web.get("/gone", raising(asyncio.CancelledError()))) as client:
        with capture_logs() as logs, pytest.raises(aiohttp.ServerDisconnectedError):
            await client.get("/gone")
    [summary] = [log for log in logs if log["event"] == "request"]
    assert summary["status"] == 499
    assert not [log for log in logs if log["event"] == "request failed"]


async def test_aiohttp_errors_are_problems_too():
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async with serve(web.get("/hello", hello)) as client:
        missing = await client.get("/nowhere")
        wrong_method = await client.delete("/hello")
        missing_body = await missing.json(content_type=None)
        assert wrong_method.content_type == PROBLEM_JSON
        assert "GET" in wrong_method.headers["Allow"]
        assert (await wrong_method.json(content_type=None))["status"] == 405
    assert missing.status == 404
    assert missing.content_type == PROBLEM_JSON
    assert missing_body["type"] == PROBLEM_TYPE_BASE + "not-found"
    assert missing_body["detail"] == "GET /nowhere: Not Found"
    assert REQUEST_ID_HEADER in missing.headers


async def test_redirects_are_not_errors():
    async with serve(web.get("/old", raising(web.HTTPFound("/new")))) as client:
        response = await client.get("/old", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/new"


ADMIN = Principal(name="admin")
TOURS = Principal(name="tours", event_ids=frozenset({"ev1", "ev2"}))


def auth() -> BearerAuth:
    return BearerAuth(realm="query", principals={"new-token": ADMIN, "old-token": ADMIN, "tour-token": TOURS})


@pytest.mark.parametrize(
    ("authorization", "error_code"),
    [
        (None, None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Bearer wrong-token", "invalid_token"),
        ("Bearer new-token-but-longer", "invalid_token"),
    ],
)
async def test_missing_malformed_or_wrong_tokens_get_a_401_challenge(authorization, error_code):
    checker = auth()

    async def protected(request: web.Request) -> web.Response:
        return web.json_response({"principal": checker.authenticate(request.headers).name})

    headers = {"Authorization": authorization} if authorization is not None else {}
    async with serve(web.get("/data", protected)) as client:
        response = await client.get("/data", headers=headers)
        body = await response.json(content_type=None)
    assert response.status == 401
    assert response.content_type == PROBLEM_JSON
    assert body["title"] == "Unauthorized"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="query"')
    if error_code is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error_code}"' in challenge


def test_every_configured_token_is_valid_and_names_its_principal():
    checker = auth()
    assert checker.authenticate({"Authorization": "Bearer new-token"}) is ADMIN
    assert checker.authenticate({"Authorization": "bearer  old-token "}) is ADMIN
    assert checker.authenticate({"Authorization": "Bearer tour-token"}) is TOURS
    rotated = BearerAuth.of_tokens(["current", "previous"], realm="ingest", principal=ADMIN)
    assert rotated.authenticate({"Authorization": "Bearer previous"}) is ADMIN


def test_without_tokens_nothing_is_accepted():
    checker = BearerAuth.of_tokens([], realm="ingest", principal=ADMIN)
    assert not checker.configured
    with pytest.raises(UnauthorizedError):
        checker.authenticate({"Authorization": "Bearer "})
    empty_token = BearerAuth.of_tokens([""], realm="ingest", principal=ADMIN)
    assert not empty_token.configured


def test_tokens_are_compared_in_constant_time_against_every_configured_token(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    checker = auth()
    assert checker.authenticate({"Authorization": "Bearer new-token"}) is ADMIN
    # No early exit on a match, and equal-length digests: the time says nothing about the token.
    assert len(compared) == 3
    assert {len(a) for a, _ in compared} == {len(b) for _, b in compared} == {32}


def test_a_principal_scope_limits_the_events_it_sees():
    assert ADMIN.may_see_event("anything")
    assert TOURS.may_see_event("ev1")
    assert not TOURS.may_see_event("ev3")


def test_unauthorized_challenge_quotes_its_parameters():
    error = UnauthorizedError('token "x" expired\nreissue', realm="ingest", error="invalid_token")
    assert error.headers["WWW-Authenticate"] == (
        'Bearer realm="ingest", error="invalid_token", error_description="token \\"x\\" expired reissue"'
    )


class Advance(BaseModel):
    minutes: float = Field(ge=0)
    note: str = ""


async def test_bad_query_parameters_are_400s_naming_the_parameter():
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) == 0:
            raise ValueError(f"must be a positive integer, got {text!r}")
        return int(text)

    async def listing(request: web.Request) -> web.Response:
        reject_unknown_parameters(request, frozenset({"limit"}))
        return web.json_response({"limit": query_parameter(request, "limit", positive)})

    async with serve(web.get("/items", listing)) as client:
        absent = await (await client.get("/items")).json()
        given = await (await client.get("/items?limit=5")).json()
        bad = await client.get("/items?limit=ten")
        repeated = await client.get("/items?limit=1&limit=2")
        unknown = await client.get("/items?lmit=1")
        bad_body, repeated_body, unknown_body = [
            await r.json(content_type=None) for r in (bad, repeated, unknown)
        ]
    assert absent == {"limit": None}
    assert given == {"limit": 5}
    assert bad.status == repeated.status == unknown.status == 400
    assert bad_body["title"] == "Invalid parameter: limit"
    assert bad_body["detail"] == "limit: must be a positive integer, got 'ten'"
    assert repeated_body["parameter"] == "limit"
    assert unknown_body["parameter"] == "lmit"


async def test_bad_json_bodies_are_400s_naming_the_field():
    async def advance(request: web.Request) -> web.Response:
        return web.json_response((await parse_json_body(request, Advance)).model_dump())

    async def anything(request: web.Request) -> web.Response:
        return web.json_response(await read_json_object(request))

    async with serve(web.post("/advance", advance), web.post("/echo", anything)) as client:
        ok = await client.post("/advance", json={"minutes": 5})
        assert await ok.json() == {"minutes": 5.0, "note": ""}
        cases = {
            "negative": await client.post("/advance", json={"minutes": -1}),
            "missing": await client.post("/advance"),
            "not json": await client.post("/echo", data=b"{minutes"),
            "not utf-8": await client.post("/echo", data=b'{"a": "\xff"}'),
            "list": await client.post("/echo", json=[1, 2]),
        }
        bodies = {name: await r.json(content_type=None) for name, r in cases.items()}
    assert {r.status for r in cases.values()} == {400}
    assert bodies["negative"]["parameter"] == "minutes"
    assert bodies["negative"]["detail"].startswith("minutes: ")
    assert bodies["missing"]["parameter"] == "minutes"
    assert bodies["not json"]["parameter"] == "body"
    assert bodies["not utf-8"]["parameter"] == "body"
    assert bodies["list"]["detail"] == "body must be a JSON object"


def test_the_base_error_is_a_generic_500():
    error = ProblemError("failed")
    assert (error.status, error.title, error.to_json()["type"]) == (
        500,
        "Internal Server Error",
        PROBLEM_TYPE_BASE + "internal-error",
    )
