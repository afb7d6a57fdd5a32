"""HTTP routes. Thin: authenticate, parse, call a plain function, answer JSON; errors are raised."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar

from aiohttp import web

from otcommon.http import InvalidParameterError, NotFoundError
from query_api import params
from query_api.analytics import analyze, report_json
from query_api.auth import TokenVerifier
from query_api.catalog import event_catalog
from query_api.filters import TransactionFilter
from query_api.pagination import CursorError, Page, PageRequest
from query_api.readmodel import ReadModel
from query_api.readside import ReadSide
from query_api.scope import EventScope
from query_api.server_timing import record_wait
from query_api.tables import (
    CUSTOMER_SORTS,
    TRANSACTION_SORTS,
    customer_detail,
    customers_page,
    transactions_page,
)


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Bounds on requests and caching of answers (from settings)."""

    limits: params.Limits
    analytics_max_age_seconds: int


READ_SIDE = web.AppKey("read_side", ReadSide)
VERIFIER = web.AppKey("token_verifier", TokenVerifier)
POLICY = web.AppKey("http_policy", HttpPolicy)
OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict[str, Any])

TRANSACTION_DEFAULT_SORT: Final = "PurchaseDate"
CUSTOMER_DEFAULT_SORT: Final = "lastPurchase"

routes = web.RouteTableDef()

PageFunction: TypeAlias = Callable[
    [ReadModel, EventScope, TransactionFilter, PageRequest], tuple[list[dict[str, Any]], Page]
]
DetailFunction: TypeAlias = Callable[[ReadModel, EventScope, str], dict[str, Any] | None]


_T = TypeVar("_T")


async def answered(request: web.Request, compute: Callable[[ReadModel], _T]) -> _T:
    """``compute(model)`` in an answer thread (``ReadSide.answer``); the wait for it in Server-Timing."""
    asked = time.perf_counter()
    started: list[float] = []

    def timed(model: ReadModel) -> _T:
        started.append(time.perf_counter())
        return compute(model)

    try:
        return await request.app[READ_SIDE].answer(timed)
    finally:
        if started:
            record_wait(request, started[0] - asked)


async def caller_scope(request: web.Request) -> EventScope:
    """The events the request's bearer token may see; a 401 problem when the token is not valid."""
    principal = await request.app[VERIFIER].authenticate(request.headers)
    return EventScope(principal.event_ids)


@routes.get("/api/analytics")
async def get_analytics(request: web.Request) -> web.StreamResponse:
    """DerivedMetrics and the breakdowns in ``include=``, with an ETag so an unchanged answer is a 304."""
    scope = await caller_scope(request)
    policy = request.app[POLICY]
    query = params.analytics_query(request, policy.limits)

    def answer(model: ReadModel) -> tuple[bytes, str]:
        report = analyze(
            model,
            scope,
            query.filters,
            time_zone=query.time_zone,
            include=query.include,
            granularity=query.granularity,
        )
        body = json.dumps(report_json(report), separators=(",", ":")).encode()
        return body, _entity_tag(body)

    body, entity_tag = await answered(request, answer)
    headers = {
        "ETag": entity_tag,
        "Cache-Control": f"private, max-age={policy.analytics_max_age_seconds}",
        # The answer depends on the token's scope: no cache may serve it to another token.
        "Vary": "Authorization",
    }
    if _matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


@dataclass(frozen=True, slots=True)
class Table:
    """One paged table: its sort columns, default sort and the function that cuts its pages."""

    sortable: frozenset[str]
    default_sort: str
    page_of: PageFunction


TRANSACTIONS: Final = Table(frozenset(TRANSACTION_SORTS), TRANSACTION_DEFAULT_SORT, transactions_page)
CUSTOMERS: Final = Table(frozenset(CUSTOMER_SORTS), CUSTOMER_DEFAULT_SORT, customers_page)


async def table_page(request: web.Request, table: Table) -> web.Response:
    """One page of a table: filters, sort, page index or cursor."""
    scope = await caller_scope(request)
    filters, page_request = params.table_query(
        request, request.app[POLICY].limits, default_sort=table.default_sort, sortable=table.sortable
    )

    def answer(model: ReadModel) -> bytes:
        try:
            rows, page = table.page_of(model, scope, filters, page_request)
        except CursorError as error:
            raise InvalidParameterError("cursor", f"cursor: {error}") from error
        return _json_body(_page_json(rows, page, page_size=page_request.page_size))

    return _json_response(await answered(request, answer))


async def detail(request: web.Request, find: DetailFunction, *, missing: str) -> web.Response:
    """One item by id within the token's events; a 404 problem (``missing``) when there is none."""
    scope = await caller_scope(request)
    params.no_parameters(request)
    document_id = request.match_info["id"]
    found = await answered(request, lambda model: find(model, scope, document_id))
    if found is None:
        raise NotFoundError(missing)
    return web.json_response(found)


@routes.get("/api/transactions")
async def list_transactions(request: web.Request) -> web.Response:
    """One page of transactions: filters, sort, page index or cursor."""
    return await table_page(request, TRANSACTIONS)


@routes.get("/api/transactions/{id}")
async def get_transaction(request: web.Request) -> web.Response:
    """One transaction; 404 when it does not exist or belongs to an event the token may not see."""
    return await detail(
        request, lambda model, scope, id_: model.get(scope, id_), missing="no such transaction"
    )


@routes.get("/api/customers")
async def list_customers(request: web.Request) -> web.Response:
    """One page of de-duplicated buyers of the matching transactions."""
    return await table_page(request, CUSTOMERS)


@routes.get("/api/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    """A buyer and their transactions within the token's events; 404 when there are none."""
    return await detail(request, _customer_with_transactions, missing="no such customer")


def _customer_with_transactions(
    model: ReadModel, scope: EventScope, customer_id: str
) -> dict[str, Any] | None:
    found = customer_detail(model, scope, customer_id)
    if found is None:
        return None
    customer, transactions = found
    return {"customer": customer, "transactions": transactions}


@routes.get("/api/events")
async def list_events(request: web.Request) -> web.Response:
    """The events the token may see, for the dashboard's selector."""
    scope = await caller_scope(request)
    params.no_parameters(request)
    catalog = await answered(request, lambda model: event_catalog(model, scope))
    return web.json_response({"events": catalog})


@routes.get("/api/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (public: it holds no data)."""
    params.no_parameters(request)
    return web.json_response(request.app[OPENAPI_DOCUMENT])


def _page_json(rows: list[dict[str, Any]], page: Page, *, page_size: int) -> dict[str, Any]:
    return {
        "rows": rows,
        "total": page.total,
        "page": page.page,
        "pageSize": page_size,
        "nextCursor": page.next_cursor,
    }


def _json_body(document: dict[str, Any]) -> bytes:
    # As web.json_response encodes it, but in the answer's thread rather than on the event loop.
    return json.dumps(document).encode()


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _entity_tag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, entity_tag: str) -> bool:
    """RFC 9110 section 13.1.2: weak comparison against each listed tag, or ``*``."""
    if if_none_match is None:
        return False
    listed = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in listed or entity_tag in listed
