"""The middlewares every HTTP service runs: request context (span, request id, summary line) and errors.

``SERVICE_MIDDLEWARES`` is the chain in its one right order: the request context outermost, so the
summary line and the span see the status the error middleware chose, and the error middleware's
log line carries the request id.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import hdrs, web
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otcommon.http.problems import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    render_problem,
)

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")
# aiohttp's own errors (no route, wrong method, body too large) get the slug of the matching domain error.
_SLUG_BY_STATUS = {
    error.status: error.slug
    for error in (
        BadRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        ConflictError,
        TooManyRequestsError,
        ServiceUnavailableError,
    )
} | {405: "method-not-allowed"}
# Headers of aiohttp's plain-text error body, which the problem body replaces.
_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH})

CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose handler was cancelled before it answered (nginx's convention)."""

log = structlog.get_logger("otcommon.http")
# A proxy that binds to the provider once one is set: the SDK's get_tracer costs about 0.1 ms a call
# (it re-registers a warnings filter and builds a deprecated InstrumentationInfo), too much per request.
_tracer = trace.get_tracer("otcommon.http")
_summary = structlog.get_logger("http")


def request_context(*, answers: metrics.Counter | None = None, log_successes: bool = True) -> Middleware:
    """A request-context middleware: a span and a request id for every request, and its summary.

    The summary is one log line per request; with ``log_successes=False`` a 2xx is not logged
    (a structlog line costs about 0.3 ms of CPU, too much for a service answering bursts, such as
    Stripe's webhook deliveries) and only the others are. ``answers``, when given, counts every
    answer by status.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else os.urandom(16).hex()
        route = request.match_info.route.resource
        route_name = route.canonical if route is not None else request.path
        started = time.perf_counter()
        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            _tracer.start_as_current_span(
                f"{request.method} {route_name}",
                kind=SpanKind.SERVER,
                context=propagate.extract(request.headers),
                attributes={"http.request.method": request.method, "http.route": route_name},
            ) as span,
        ):
            status = 500
            try:
                response = await handler(request)
                status = response.status
            except web.HTTPException as exc:
                status = exc.status
                exc.headers[REQUEST_ID_HEADER] = request_id
                raise
            except asyncio.CancelledError:
                # The handler was cancelled (the client went away, or the server is stopping): no
                # answer was sent, and nothing failed on our side.
                status = CLIENT_CLOSED_REQUEST
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:  # noqa: PLR2004
                    span.set_status(Status(StatusCode.ERROR))
                if answers is not None:
                    answers.add(1, {"status": status})
                if log_successes or not 200 <= status < 300:  # noqa: PLR2004
                    _summary.info(
                        "request",
                        method=request.method,
                        route=route_name,
                        status=status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    )
            response.headers[REQUEST_ID_HEADER] = request_id
            return response

    return middleware


request_context_middleware: Middleware = request_context()
"""One span and one summary log line per request; a request id echoed in the response."""


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render domain errors, aiohttp's own 4xx/5xx and unexpected failures as problem+json."""
    try:
        return await handler(request)
    except ProblemError as error:
        return render_problem(error)
    except web.HTTPException as error:
        if error.status < web.HTTPBadRequest.status_code:
            raise  # redirects and other non-errors pass through as aiohttp built them
        return render_problem(_AiohttpError(request, error))
    except Exception:
        # The body says nothing of the cause (it may hold internals or personal data); the log has it.
        log.exception("request failed", method=request.method, path=request.path)
        return render_problem(ProblemError("The server failed to answer this request; it was logged."))


class _AiohttpError(ProblemError):
    """An error aiohttp raised itself, with the status and reason it chose."""

    def __init__(self, request: web.Request, error: web.HTTPException) -> None:
        # A raiser's own text (e.g. the body size limit) is meant for the client; aiohttp's default is not.
        given = error.text if error.text and error.text != f"{error.status}: {error.reason}" else None
        super().__init__(
            given or f"{request.method} {request.path}: {error.reason}",
            title=error.reason,
            headers={name: value for name, value in error.headers.items() if name not in _BODY_HEADERS},
        )
        self.status = error.status
        self.slug = _SLUG_BY_STATUS.get(error.status, "http-error")


SERVICE_MIDDLEWARES: tuple[Middleware, ...] = (request_context_middleware, problem_middleware)
"""The middlewares of a service's ``web.Application``, outermost first."""
