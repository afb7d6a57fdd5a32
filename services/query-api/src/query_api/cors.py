"""CORS for the configured dashboard origins, preflight included.

Bearer tokens travel in a header, never in cookies, so credentials are not allowed: a page from
another origin cannot make the browser send anything on its own. Error answers carry the headers
too, so the dashboard can read a 401.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import hdrs, web

from otcommon.http import REQUEST_ID_HEADER, ForbiddenError, render_problem

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiohttp.typedefs import Handler, Middleware

ALLOWED_METHODS: Final = "GET, OPTIONS"
ALLOWED_HEADERS: Final = "Authorization, If-None-Match, Last-Event-ID, X-Request-ID, Cache-Control"
EXPOSED_HEADERS: Final = f"ETag, Retry-After, Server-Timing, WWW-Authenticate, {REQUEST_ID_HEADER}"
PREFLIGHT_MAX_AGE_SECONDS: Final = 600


class CorsPolicy:
    """Answers preflights (a middleware) and marks answers readable (a response-prepare signal).

    The headers are added as a response is prepared, so streamed answers get them too.
    """

    def __init__(self, origins: Iterable[str]) -> None:
        self._allowed = frozenset(origins)

    def install(self, app: web.Application) -> Middleware:
        """Hook the signal into ``app``; the returned middleware goes into its chain."""
        app.on_response_prepare.append(self._on_prepare)
        return self._preflight_middleware

    @web.middleware
    async def _preflight_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            request.method == hdrs.METH_OPTIONS
            and origin is not None
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            return _preflight(origin, self._allowed)
        return await handler(request)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin in self._allowed:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
        if self._allowed:
            _add_vary(response, hdrs.ORIGIN)


def _preflight(origin: str, allowed: frozenset[str]) -> web.StreamResponse:
    if origin not in allowed:
        response = render_problem(ForbiddenError(f"origin {origin!r} is not allowed by CORS"))
    else:
        response = web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_SECONDS),
            },
        )
    _add_vary(response, hdrs.ORIGIN)
    return response


def _add_vary(response: web.StreamResponse, header: str) -> None:
    present = [value.strip() for value in response.headers.get(hdrs.VARY, "").split(",") if value.strip()]
    if header not in present:
        response.headers[hdrs.VARY] = ", ".join([*present, header])
