"""HTTP handlers: parse the request, call the state, shape the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from devstack.opentickets.auth import TokenState, basic_credentials, unauthorized
from devstack.opentickets.keys import STATE_KEY
from devstack.sandbox.controls import faults_json
from otcommon.http import (
    NotFoundError,
    bearer_token,
    query_parameter,
    reject_unknown_parameters,
    same_secret,
)

if TYPE_CHECKING:
    from devstack.opentickets.state import SandboxState

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
_TRANSACTION_PARAMETERS = frozenset({"updatedSince", "eventId", "limit", "cursor"})

routes = web.RouteTableDef()


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    # The token endpoint answers in RFC 6749's error format, which OAuth client libraries parse.
    headers = {"Cache-Control": "no-store"}
    if status == web.HTTPUnauthorized.status_code:
        headers["WWW-Authenticate"] = 'Basic realm="opentickets"'
    return web.json_response(
        {"error": error, "error_description": description}, status=status, headers=headers
    )


@routes.post("/oauth/token")
async def issue_token(request: web.Request) -> web.Response:
    """OAuth2 client-credentials grant."""
    state = _state(request)
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "send application/x-www-form-urlencoded form fields")
    form = await request.post()
    grant_type = form.get("grant_type")
    if grant_type is None:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    credentials = basic_credentials(request.headers)
    if credentials is None:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
        credentials = (client_id, client_secret)
    settings = state.settings
    if not (
        same_secret(credentials[0], settings.client_id)
        and same_secret(credentials[1], settings.client_secret)
    ):
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    token = state.tokens.issue()
    return web.json_response(
        {"access_token": token.access_token, "token_type": "Bearer", "expires_in": token.expires_in},
        headers={"Cache-Control": "no-store"},
    )


def authenticate(request: web.Request) -> None:
    """Let the request through with a valid bearer token or API key, else raise a 401."""
    state = _state(request)
    token = bearer_token(request.headers)
    if token is not None:
        if state.tokens.check(token) is TokenState.VALID and state.faults.take_expired_token():
            state.tokens.expire(token)
        match state.tokens.check(token):
            case TokenState.VALID:
                return
            case TokenState.EXPIRED:
                raise unauthorized("The access token expired", error="invalid_token")
            case TokenState.UNKNOWN:
                raise unauthorized("The access token is not one this server issued", error="invalid_token")
    api_key = request.headers.get("X-Api-Key")
    if api_key is not None:
        if same_secret(api_key, state.settings.api_key):
            return
        raise unauthorized("The API key is not valid")
    raise unauthorized("Send a bearer token (Authorization: Bearer ...) or an X-Api-Key header")


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _timestamp(text: str) -> int:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        hint = " (a '+' in a query string must be sent as %2B)" if " " in text else ""
        raise ValueError(f"must be an ISO 8601 timestamp, got {text!r}{hint}") from error
    if parsed.tzinfo is None:
        raise ValueError(f"needs a UTC offset or Z, got {text!r}")
    seconds = parsed.astimezone(UTC).timestamp()
    # Rows carry whole seconds; a fractional bound includes rows from the next whole second on.
    return int(seconds) if seconds.is_integer() else int(seconds) + 1


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """All events of the account."""
    authenticate(request)
    reject_unknown_parameters(request, frozenset())
    return web.json_response({"data": _state(request).scenario.events(), "nextCursor": None})


@routes.get("/v1/transactions")
async def list_transactions(request: web.Request) -> web.Response:
    """Transactions ordered by (updatedAt, id), a page at a time."""
    authenticate(request)
    state = _state(request)
    reject_unknown_parameters(request, _TRANSACTION_PARAMETERS)
    limit = query_parameter(request, "limit", _limit)
    updated_since = query_parameter(request, "updatedSince", _timestamp)
    event_id = query_parameter(request, "eventId", str)
    cursor = query_parameter(request, "cursor", str)
    if event_id is not None and event_id not in state.scenario.event_ids():
        raise NotFoundError(f"no event {event_id!r}", title="Unknown event")
    page = state.index.page(
        limit=DEFAULT_LIMIT if limit is None else limit,
        updated_since=updated_since,
        event_id=event_id,
        cursor=cursor,
    )
    return web.json_response({"data": page.rows, "nextCursor": page.next_cursor})


@routes.post("/_sandbox/reset")
async def reset(request: web.Request) -> web.Response:
    """Back to the seeded start and the start-up faults."""
    state = _state(request)
    state.reset()
    return web.json_response({"now": state.scenario.now_iso, "orders": len(state.index)})


@routes.post("/_sandbox/expire-tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Expire every issued token, as if their lifetime had passed."""
    return web.json_response({"expired": _state(request).tokens.expire_all()})


@routes.get("/_sandbox/state")
async def describe(request: web.Request) -> web.Response:
    """Scenario clock, sizes and request counters."""
    state = _state(request)
    return web.json_response(
        {
            "now": state.scenario.now_iso,
            "seed": state.scenario.seed,
            "orders": len(state.index),
            "events": len(state.scenario.event_ids()),
            "requests": dict(state.requests),
            **faults_json(state.faults),
        }
    )
