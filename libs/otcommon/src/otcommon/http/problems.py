"""Domain errors a handler raises, and their one rendering as problem+json (RFC 9457).

A handler never builds an error body: it raises one of these, and the error middleware renders it.
Each class fixes a status, a title and the slug of its ``type`` URI; an instance carries the
``detail`` for this occurrence and, where the client can act on more, extension members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Mapping

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://opentickets.example/problems/"
"""Every problem's ``type`` is this base plus the error's slug, in every service alike."""

_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


class ProblemError(Exception):
    """A request failed in a way the client can be told about; subclasses fix status, title and slug."""

    status: int = 500
    title: str = "Internal Server Error"
    slug: str = "internal-error"

    def __init__(
        self,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if title is not None:
            self.title = title
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})
        if clashing := _STANDARD_MEMBERS & self.extensions.keys():
            raise ValueError(f"extension members may not replace standard ones: {sorted(clashing)}")

    def to_json(self) -> dict[str, Any]:
        """The problem document."""
        return {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }


class BadRequestError(ProblemError):
    """The request as a whole cannot be understood."""

    status = 400
    title = "Bad Request"
    slug = "bad-request"


class InvalidParameterError(BadRequestError):
    """A query parameter or body field is invalid; the title and the ``parameter`` member name it."""

    slug = "invalid-parameter"

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail, title=f"Invalid parameter: {parameter}", extensions={"parameter": parameter})
        self.parameter = parameter


class UnauthorizedError(ProblemError):
    """Missing or wrong credentials, with the RFC 6750 challenge a bearer client expects."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def __init__(self, detail: str, *, realm: str, error: str | None = None) -> None:
        challenge = f"Bearer realm={_quoted(realm)}"
        if error is not None:
            challenge += f", error={_quoted(error)}, error_description={_quoted(detail)}"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class ForbiddenError(ProblemError):
    """The credentials are valid but do not cover this request."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFoundError(ProblemError):
    """The resource named by the request does not exist."""

    status = 404
    title = "Not Found"
    slug = "not-found"


class ConflictError(ProblemError):
    """The request conflicts with the resource's current state (extensions can say which)."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class TooManyRequestsError(ProblemError):
    """Rate limited; ``Retry-After`` says when to try again."""

    status = 429
    title = "Too Many Requests"
    slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class ServiceUnavailableError(ProblemError):
    """The service cannot answer now (a dependency is down, or the feature is not configured)."""

    status = 503
    title = "Service Unavailable"
    slug = "unavailable"

    def __init__(
        self, detail: str, *, title: str | None = None, retry_after_seconds: int | None = None
    ) -> None:
        headers = {"Retry-After": str(retry_after_seconds)} if retry_after_seconds is not None else None
        super().__init__(detail, title=title, headers=headers)


def render_problem(error: ProblemError) -> web.Response:
    """The problem+json response for a domain error."""
    return web.json_response(
        error.to_json(), status=error.status, content_type=PROBLEM_CONTENT_TYPE, headers=error.headers
    )


def _quoted(value: str) -> str:
    # An auth-param value is an HTTP quoted-string: backslash and double quote are escaped, and a
    # line break, which no header value may hold, becomes a space.
    escaped = " ".join(value.splitlines()).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
