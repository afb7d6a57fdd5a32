"""Domain errors of the sandbox and their problem+json (RFC 9457) rendering, in one place."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Mapping

PROBLEM_BASE = "https://opentickets.example/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemError(Exception):
    """A request failed in a way the client can act on."""

    def __init__(
        self,
        *,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


def invalid_parameter(name: str, detail: str) -> ProblemError:
    """A 400 naming the query parameter or body field at fault."""
    return ProblemError(
        status=400, slug="invalid-parameter", title=f"Invalid parameter: {name}", detail=detail
    )


def problem_response(
    *, status: int, slug: str, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A problem+json response."""
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def render(error: ProblemError) -> web.Response:
    """The response for a domain error."""
    return problem_response(
        status=error.status, slug=error.slug, title=error.title, detail=error.detail, headers=error.headers
    )
