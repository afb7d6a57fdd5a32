"""The HTTP toolkit every service uses: problem+json errors, the middleware chain, bearer tokens, parsing.

Handlers raise the errors of ``problems`` and never build error bodies; ``SERVICE_MIDDLEWARES``
renders them, aiohttp's own errors and unexpected failures alike.
"""

from otcommon.http.auth import BearerAuth, Principal, bearer_token, same_secret
from otcommon.http.middleware import (
    REQUEST_ID_HEADER,
    SERVICE_MIDDLEWARES,
    problem_middleware,
    request_context,
    request_context_middleware,
)
from otcommon.http.parsing import (
    invalid_field,
    parse_json_body,
    query_parameter,
    read_json_object,
    reject_unknown_parameters,
)
from otcommon.http.problems import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_BASE,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidParameterError,
    NotFoundError,
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    render_problem,
)

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_BASE",
    "REQUEST_ID_HEADER",
    "SERVICE_MIDDLEWARES",
    "BadRequestError",
    "BearerAuth",
    "ConflictError",
    "ForbiddenError",
    "InvalidParameterError",
    "NotFoundError",
    "Principal",
    "ProblemError",
    "ServiceUnavailableError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "bearer_token",
    "invalid_field",
    "parse_json_body",
    "problem_middleware",
    "query_parameter",
    "read_json_object",
    "reject_unknown_parameters",
    "render_problem",
    "request_context",
    "request_context_middleware",
    "same_secret",
]
