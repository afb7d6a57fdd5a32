"""The OpenAPI 3.1 document of the query API, built from the same names and models the code uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, get_args

import polars as pl

from otcommon.http import PROBLEM_CONTENT_TYPE
from query_api.analytics import AnalyticsReport, Breakdown
from query_api.changes import ChangeKind
from query_api.columns import CUSTOMER_ID, DOCUMENT_SCHEMA, SERVED_FIELDS
from query_api.filters import DateMode
from query_api.models import Granularity
from query_api.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from query_api.params import (
    MAX_CURSOR_LENGTH,
    MAX_PAGE_INDEX,
    MAX_TEXT_LENGTH,
    MAX_VALUE_LENGTH,
    MAX_ZONE_LENGTH,
)
from query_api.stream import LAST_EVENT_ID, RECONNECT_MILLISECONDS, RELOAD_REASON
from query_api.tables import CUSTOMER_SORTS, TRANSACTION_SORTS

if TYPE_CHECKING:
    from query_api.settings import QueryApiSettings

REF: Final = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _column_schema(dtype: pl.DataType) -> dict[str, Any]:
    if dtype == pl.Int64():
        return {"type": "integer"}
    if dtype == pl.Float64():
        return {"type": "number"}
    if dtype == pl.Boolean():
        return {"type": "boolean"}
    if isinstance(dtype, pl.List):
        return {"type": "array", "items": {"type": "string"}}
    return {"type": "string"}


def _transaction_schema() -> dict[str, Any]:
    properties = {name: _nullable(_column_schema(DOCUMENT_SCHEMA[name])) for name in SERVED_FIELDS}
    properties[CUSTOMER_ID] = {
        "type": "string",
        "description": "Opaque id of the buyer (/api/customers/{id}).",
    }
    return {
        "type": "object",
        "description": "A transaction with the dashboard's field names (SPEC section 2).",
        "properties": properties,
        "required": ["id", "eventId", "PurchaseDate", "TotalTickets", "TotalAmount", CUSTOMER_ID],
    }


def _customer_schema() -> dict[str, Any]:
    text = _nullable({"type": "string"})
    return {
        "type": "object",
        "description": "One buyer, de-duplicated by email, else phone, else name (SPEC section 4).",
        "properties": {
            "id": {"type": "string"},
            "name": text,
            "email": text,
            "phone": text,
            "firstPurchase": {"type": "string"},
            "lastPurchase": {"type": "string"},
            "orders": {"type": "integer"},
            "tickets": {"type": "integer"},
            "totalSpent": {"type": "number"},
            "redeemedTickets": {"type": "integer"},
            "refunded": {"type": "boolean"},
            "disputed": {"type": "boolean"},
            "events": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["id", "firstPurchase", "lastPurchase", "orders", "tickets", "totalSpent", "events"],
    }


def _page_schema(row: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "rows": {"type": "array", "items": _ref(row)},
            "total": {"type": "integer", "description": "Rows matching the filters, over all pages."},
            "page": _nullable({"type": "integer", "description": "0-based index; null for cursor pages."}),
            "pageSize": {"type": "integer"},
            "nextCursor": _nullable({"type": "string", "description": "Pass as cursor= for the next page."}),
        },
        "required": ["rows", "total", "page", "pageSize", "nextCursor"],
    }


def _event_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "eventId": {"type": "string"},
            "eventName": _nullable({"type": "string"}),
            "ordersCount": {"type": "integer"},
            "ticketsSold": {"type": "integer"},
            "grossRevenue": {"type": "number"},
            "firstPurchase": {"type": "string"},
            "lastPurchase": {"type": "string"},
        },
        "required": ["eventId", "ordersCount", "ticketsSold", "grossRevenue"],
    }


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details; `parameter` names the bad query parameter.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "parameter": {"type": "string"},
        },
        "required": ["type", "title", "status", "detail"],
    }


def _schemas() -> dict[str, Any]:
    analytics = AnalyticsReport.model_json_schema(by_alias=True, mode="serialization", ref_template=REF)
    definitions = analytics.pop("$defs", {})
    return {
        **definitions,
        "AnalyticsReport": analytics,
        "Transaction": _transaction_schema(),
        "TransactionPage": _page_schema("Transaction"),
        "Customer": _customer_schema(),
        "CustomerPage": _page_schema("Customer"),
        "CustomerDetail": {
            "type": "object",
            "properties": {
                "customer": _ref("Customer"),
                "transactions": {"type": "array", "items": _ref("Transaction")},
            },
            "required": ["customer", "transactions"],
        },
        "Event": _event_schema(),
        "EventCatalog": {
            "type": "object",
            "properties": {"events": {"type": "array", "items": _ref("Event")}},
            "required": ["events"],
        },
        "StreamChange": _stream_change_schema(),
        "StreamReload": _stream_reload_schema(),
        "Problem": _problem_schema(),
        "Health": {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _list_query(name: str, items: dict[str, Any], description: str, max_values: int) -> dict[str, Any]:
    return {
        **_query(name, {"type": "array", "items": items, "maxItems": max_values}, description),
        "style": "form",
        "explode": True,
    }


def _filter_parameters(settings: QueryApiSettings) -> list[dict[str, Any]]:
    text = {"type": "string", "maxLength": MAX_TEXT_LENGTH}
    value = {"type": "string", "maxLength": MAX_VALUE_LENGTH}
    instant = {"type": "string", "format": "date-time"}
    flag = {"type": "string", "enum": ["true", "false"]}
    most = settings.query_api_max_list_values
    span = settings.query_api_max_date_span_days
    return [
        _list_query("eventId", value, "Event ids (repeat the parameter or separate by commas).", most),
        _query("from", instant, f"Inclusive start (ISO 8601; UTC without offset); from..to <= {span} days."),
        _query("to", instant, "Exclusive end; not earlier than from (equal bounds select nothing)."),
        _query(
            "dateMode", {"type": "string", "enum": list(get_args(DateMode))}, "Which date from/to apply to."
        ),
        _list_query("ticketTypes", value, "Ticket types; an order matches if any of its types does.", most),
        _list_query(
            "source", {"type": "string", "enum": ["online", "boxOffice", "other"]}, "Sales channels.", most
        ),
        _query("refunded", flag, "Only refunded (true) or not refunded (false) orders."),
        _query("disputed", flag, "Only disputed or undisputed orders."),
        _query("valid", flag, "Only valid or invalid orders."),
        _list_query("referralCode", value, "Referral codes (case-insensitive).", most),
        _query("q", text, "Case-insensitive substring of Name, Email, Phone, PaymentID or ticketId."),
    ]


def _page_parameters(sorts: list[str], default_sort: str) -> list[dict[str, Any]]:
    return [
        _query(
            "sort", {"type": "string", "enum": sorts}, f"Sort column (default {default_sort}); ties by id."
        ),
        _query(
            "order", {"type": "string", "enum": ["asc", "desc"]}, "Sort direction (nulls last either way)."
        ),
        _query(
            "pageSize",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            f"Rows per page (default {DEFAULT_PAGE_SIZE}).",
        ),
        _query("page", {"type": "integer", "minimum": 0, "maximum": MAX_PAGE_INDEX}, "0-based page index."),
        _query(
            "cursor",
            {"type": "string", "maxLength": MAX_CURSOR_LENGTH},
            "nextCursor of the previous page (not with page); bound to the same sort and filters.",
        ),
    ]


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref("Problem")}}}


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _errors(*, not_found: bool = False) -> dict[str, Any]:
    errors = {
        "400": _problem("A parameter is invalid, unknown or out of bounds (named in `parameter`)."),
        "401": _problem("Missing, expired or invalid bearer token (see WWW-Authenticate)."),
        "503": _problem("The read model is still loading, or the signing keys cannot be fetched."),
    }
    if not_found:
        errors["404"] = _problem("Not found, or belongs to an event the token may not see.")
    return errors


def _path_id(description: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _stream_change_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The data of a `change` event: one applied change to a transaction.",
        "properties": {
            "kind": {"type": "string", "enum": [kind.value for kind in ChangeKind]},
            "id": {"type": "string", "description": "The transaction's id."},
            "eventId": {"type": "string"},
            "changed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Served fields that changed; empty for a sale or a removal (the whole row).",
            },
            "transaction": _nullable(_ref("Transaction")),
        },
        "required": ["kind", "id", "eventId", "changed", "transaction"],
    }


def _stream_reload_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The data of a `reload` event: the resume point asked for is no longer buffered "
        "(or was given by another replica's epoch), so changes may have been missed; reload the data "
        "and carry on from this event's id.",
        "properties": {
            "reason": {"type": "string", "const": RELOAD_REASON},
            "lastEventId": {"type": "string", "description": "The Last-Event-ID the client sent."},
        },
        "required": ["reason", "lastEventId"],
    }


def _sse_event(name: str, data: str, *, with_id: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "event": {"const": name},
            "id": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": _ref(data)},
        },
        "required": ["event", "data", *(["id"] if with_id else [])],
    }


def _stream_event_schema() -> dict[str, Any]:
    return {
        "description": "One server-sent event (its event, id and data fields).",
        "oneOf": [
            _sse_event("change", "StreamChange", with_id=True),
            # A replica that has published nothing yet has no newest id to give.
            _sse_event("reload", "StreamReload", with_id=False),
        ],
    }


def _stream_path() -> dict[str, Any]:
    events = (
        "Events (text/event-stream): `change` (data: StreamChange; id: its change feed position, the "
        "same on every replica), `reload` (data: StreamReload; sent first when Last-Event-ID can no "
        "longer be resumed, with the id of the newest event), and `: keep-alive` comments while idle. "
        f"The stream starts with `retry: {RECONNECT_MILLISECONDS}`."
    )
    return {
        "get": {
            "summary": "Server-sent events: changes to transactions of the events the token may see",
            "description": events,
            "parameters": [
                {
                    "name": LAST_EVENT_ID,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": r"^\s*(.*\.)?[0-9]+\s*$"},
                    "description": "Resume after this event (browsers send it when they reconnect): an id "
                    "the stream gave out, `<position>` or `<epoch>.<position>`. Another form is a 400 "
                    "naming the header; an id no longer buffered, or of another epoch, gets `reload`.",
                    "examples": {
                        "resume": {"summary": "A change feed position", "value": "1"},
                        "epoch": {"summary": "A replica's own numbering", "value": "3f2a9c0b1d7e.42"},
                    },
                }
            ],
            "responses": {
                "200": {
                    "description": "An endless text/event-stream; each event's id resumes the stream.",
                    "headers": {
                        "Cache-Control": {"schema": {"type": "string", "const": "no-cache, no-transform"}},
                        "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
                    },
                    # Before OpenAPI 3.2's itemSchema, a text/event-stream schema describes one event.
                    "content": {"text/event-stream": {"schema": _stream_event_schema()}},
                },
                **_errors(),
            },
        }
    }


def _paths(settings: QueryApiSettings) -> dict[str, Any]:
    filters = _filter_parameters(settings)
    most = settings.query_api_max_list_values
    analytics_parameters = [
        *filters,
        _query(
            "tz",
            {"type": "string", "maxLength": MAX_ZONE_LENGTH},
            "IANA time zone for peaks and time series (default UTC).",
        ),
        _list_query(
            "include",
            {"type": "string", "enum": [breakdown.value for breakdown in Breakdown]},
            "Breakdowns to add to the metrics.",
            most,
        ),
        _query(
            "granularity",
            {"type": "string", "enum": list(get_args(Granularity))},
            f"Time series buckets (default day); hour needs from and to at most "
            f"{settings.query_api_max_hourly_span_days} days apart.",
        ),
    ]
    cache_headers = {
        "ETag": {"schema": {"type": "string"}, "description": "Send back in If-None-Match for a 304."},
        "Cache-Control": {"schema": {"type": "string"}},
    }
    if_none_match = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    return {
        "/api/analytics": {
            "get": {
                "summary": "DerivedMetrics of the filtered orders, with optional breakdowns",
                "parameters": [*analytics_parameters, if_none_match],
                "responses": {
                    "200": _json("Metrics, and each breakdown asked for.", "AnalyticsReport", cache_headers),
                    "304": {
                        "description": "Unchanged since the ETag sent in If-None-Match.",
                        "headers": cache_headers,
                    },
                    **_errors(),
                },
            }
        },
        "/api/transactions": {
            "get": {
                "summary": "One page of transactions",
                "parameters": [*filters, *_page_parameters(sorted(TRANSACTION_SORTS), "PurchaseDate")],
                "responses": {"200": _json("A page of transactions.", "TransactionPage"), **_errors()},
            }
        },
        "/api/transactions/{id}": {
            "get": {
                "summary": "One transaction",
                "parameters": [_path_id("The transaction's id.")],
                "responses": {"200": _json("The transaction.", "Transaction"), **_errors(not_found=True)},
            }
        },
        "/api/customers": {
            "get": {
                "summary": "One page of de-duplicated buyers",
                "parameters": [*filters, *_page_parameters(sorted(CUSTOMER_SORTS), "lastPurchase")],
                "responses": {"200": _json("A page of buyers.", "CustomerPage"), **_errors()},
            }
        },
        "/api/customers/{id}": {
            "get": {
                "summary": "A buyer and their transactions (newest first)",
                "parameters": [_path_id("The buyer's customerId.")],
                "responses": {"200": _json("The buyer.", "CustomerDetail"), **_errors(not_found=True)},
            }
        },
        "/api/events": {
            "get": {
                "summary": "The events the token may see",
                "responses": {"200": _json("The event catalog.", "EventCatalog"), **_errors()},
            }
        },
        "/api/stream": _stream_path(),
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {"200": _json("The process answers.", "Health")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the read model is loaded and Cosmos DB answers",
                "security": [],
                "responses": {
                    "200": _json("Ready.", "Health"),
                    "503": _json("Not ready (names the failing dependency).", "Health"),
                },
            }
        },
    }


def openapi_document(settings: QueryApiSettings) -> dict[str, Any]:
    """The whole document; limits come from the settings in force."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenTickets query API",
            "version": "1.0.0",
            "description": (
                "Metrics, breakdowns and tables of ticket transactions for the organizer dashboard. "
                "Every data endpoint needs a bearer JWT; its "
                f"`{settings.query_api_events_claim}` claim (a list of event ids), when present, limits "
                "everything to those events. Errors are application/problem+json."
            ),
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(settings),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
