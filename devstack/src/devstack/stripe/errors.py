"""Stripe's error shape: `{"error": {"type", "code", "message", "param"}}` with Stripe's statuses.

Handlers raise `StripeError`; `stripe_error_middleware` renders it, and anything unexpected as Stripe's
`api_error`, so a client library maps every failure to the exception it maps Stripe's to.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
# Stripe's API lives under /v1/; the sandbox's own controls answer in the project's problem+json.
API_PREFIX = "/v1/"


class StripeError(Exception):
    """An error answer in Stripe's shape."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.code = code
        self.param = param
        self.should_retry = should_retry

    def to_json(self) -> dict[str, Any]:
        """The body Stripe sends; absent fields are left out, as Stripe leaves them out."""
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}

    def response(self) -> web.Response:
        """The HTTP answer; `Stripe-Should-Retry` tells the client library whether a retry can help."""
        headers = {}
        if self.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry else "false"
        return web.json_response(self.to_json(), status=self.status, headers=headers)


def resource_missing(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    """Stripe's answer for an id that does not exist, or not on the account asking (400 for a cursor)."""
    return StripeError(
        f"No such {kind}: '{object_id}'",
        status=status,
        code="resource_missing",
        param=param,
        should_retry=False,
    )


def invalid_parameter(param: str, message: str) -> StripeError:
    """A 400 naming the parameter at fault."""
    return StripeError(message, code="parameter_invalid", param=param, should_retry=False)


def unrecognized_url(method: str, path: str) -> StripeError:
    """Stripe's 404 for a path it does not serve."""
    return StripeError(f"Unrecognized request URL ({method}: {path}).", status=404, should_retry=False)


@web.middleware
async def stripe_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render `StripeError`s, aiohttp's own errors and unexpected failures of the API in Stripe's shape."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except StripeError as error:
        return error.response()
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return unrecognized_url(request.method, request.path).response()
    except web.HTTPException as error:
        if error.status < web.HTTPBadRequest.status_code:
            raise  # redirects and other non-errors pass through as aiohttp built them
        return StripeError(error.reason, status=error.status).response()
    except Exception:
        log.exception("unexpected error serving %s", request.path)
        return StripeError(
            "An unexpected error occurred in the sandbox.", status=500, error_type="api_error"
        ).response()
