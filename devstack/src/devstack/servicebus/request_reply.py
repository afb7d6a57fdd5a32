"""Request/response messages of the `$cbs` and `$management` nodes: parse a request, encode a reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proton import symbol

from devstack.servicebus.messages import (
    AMQP_VALUE,
    APPLICATION_PROPERTIES,
    PROPERTIES,
    decode_section,
    encode_section,
    split_sections,
)


@dataclass(frozen=True)
class Request:
    operation: str
    message_id: Any
    reply_to: str | None
    properties: dict[str, Any]
    body: Any


def parse_request(raw: bytes) -> Request:
    properties: list[Any] = []
    application: dict[str, Any] = {}
    body: Any = None
    for code, section in split_sections(raw):
        if code == PROPERTIES:
            properties = list(decode_section(section) or [])
        elif code == APPLICATION_PROPERTIES:
            application = {str(key): value for key, value in (decode_section(section) or {}).items()}
        elif code == AMQP_VALUE:
            body = decode_section(section)
    properties += [None] * (5 - len(properties))
    application = {
        key: str(value) if isinstance(value, symbol) else value for key, value in application.items()
    }
    reply_to = properties[4]
    return Request(
        operation=str(application.get("operation", "")),
        message_id=properties[0],
        reply_to=str(reply_to) if reply_to is not None else None,
        properties=application,
        body=body,
    )


def encode_reply(request: Request, application: dict[str, Any], body: Any) -> bytes:
    """A reply correlated to `request` (correlation-id = its message-id), as clients match them."""
    properties: list[Any] = [None] * 6
    properties[5] = request.message_id
    return (
        encode_section(PROPERTIES, properties)
        + encode_section(APPLICATION_PROPERTIES, application)
        + encode_section(AMQP_VALUE, body)
    )
