"""Reading query parameters and JSON bodies, where every failure is a 400 naming the field at fault."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from otcommon.http.problems import InvalidParameterError

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

ParsedT = TypeVar("ParsedT")
ModelT = TypeVar("ModelT", bound=BaseModel)

BODY = "body"
"""The name a problem gives to the body as a whole."""


def query_parameter(request: web.Request, name: str, parse: Callable[[str], ParsedT]) -> ParsedT | None:
    """The parsed value of a query parameter given at most once; None when absent.

    ``parse`` raises ValueError for a bad value; its message becomes the problem's detail.
    """
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameterError(name, f"{name} may be given once")
    try:
        return parse(values[0])
    except ValueError as error:
        raise InvalidParameterError(name, f"{name}: {error}") from error


def reject_unknown_parameters(request: web.Request, allowed: frozenset[str]) -> None:
    """A 400 naming the first query parameter not in ``allowed``: a typo must not be silently ignored."""
    if unknown := sorted(set(request.query) - allowed):
        raise InvalidParameterError(
            unknown[0], f"unknown query parameter {unknown[0]!r}; allowed: {sorted(allowed)}"
        )


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as error:  # not JSON, or not UTF-8
        raise InvalidParameterError(BODY, f"body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise InvalidParameterError(BODY, "body must be a JSON object")
    return body


async def parse_json_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The body validated as ``model``; a missing or bad field is a 400 naming it."""
    body = await read_json_object(request)
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise invalid_field(error) from error


def invalid_field(error: ValidationError) -> InvalidParameterError:
    """The 400 for a pydantic validation error, naming its first bad field (``body`` for the whole)."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or BODY
    return InvalidParameterError(field, f"{field}: {first['msg']}")
