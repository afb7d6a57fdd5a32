"""AMQP 1.0 message sections: split what a sender sent, read what routing needs, re-encode for delivery.

The broker keeps the bare message (properties, application properties, body) as the sender encoded it and
only rewrites the header and message annotations on delivery, so body types and property types reach the
receiver unchanged. Proton's `Message` class is not used for that because it merges multiple body sections.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any

from proton import Array, Data, Described, symbol, timestamp, ubyte, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78
# AMQP type constructors the section reader needs to recognise.
_SMALL_ULONG, _ULONG, _ULONG_ZERO = 0x53, 0x80, 0x44
_SYMBOL_8, _SYMBOL_32, _BINARY_8, _BINARY_32 = 0xA3, 0xB3, 0xA0, 0xB0
_SESSION_ID_INDEX = 10
_BODY_CODES = frozenset({DATA, AMQP_SEQUENCE, AMQP_VALUE})
_SYMBOLIC_DESCRIPTORS = {
    b"amqp:header:list": HEADER,
    b"amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    b"amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    b"amqp:properties:list": PROPERTIES,
    b"amqp:application-properties:map": APPLICATION_PROPERTIES,
    b"amqp:data:binary": DATA,
    b"amqp:amqp-sequence:list": AMQP_SEQUENCE,
    b"amqp:amqp-value:*": AMQP_VALUE,
    b"amqp:footer:map": FOOTER,
}
# Index of each field in the AMQP properties list, keyed by the SQL filter's system property name.
PROPERTY_FIELDS = {
    "messageid": 0,
    "to": 2,
    "label": 3,
    "replyto": 4,
    "correlationid": 5,
    "contenttype": 6,
    "sessionid": 10,
    "replytosessionid": 12,
}

SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
LOCKED_UNTIL = symbol("x-opt-locked-until")
DEAD_LETTER_SOURCE = symbol("x-opt-deadletter-source")
ENQUEUE_SEQUENCE_NUMBER = symbol("x-opt-enqueue-sequence-number")


class MalformedMessageError(ValueError):
    """Bytes that are not an AMQP 1.0 message."""


def _value_end(buffer: bytes, position: int) -> int:
    """Return where the encoded AMQP value starting at `position` ends."""
    try:
        code = buffer[position]
        position += 1
        if code == 0x00:  # described: a descriptor value, then the value itself
            return _value_end(buffer, _value_end(buffer, position))
        width = code & 0xF0
        fixed = {0x40: 0, 0x50: 1, 0x60: 2, 0x70: 4, 0x80: 8, 0x90: 16}
        if width in fixed:
            end = position + fixed[width]
        elif width in {0xA0, 0xC0, 0xE0}:
            end = position + 1 + buffer[position]
        elif width in {0xB0, 0xD0, 0xF0}:
            end = position + 4 + struct.unpack_from(">I", buffer, position)[0]
        else:
            raise MalformedMessageError(f"unknown AMQP type code 0x{code:02x}")
    except (IndexError, struct.error):
        raise MalformedMessageError("truncated AMQP value") from None
    if end > len(buffer):
        raise MalformedMessageError("truncated AMQP value")
    return end


def _descriptor_code(buffer: bytes, position: int) -> tuple[int, int]:
    """Read a section descriptor at `position` (just after 0x00); return (code, value start)."""
    end = _value_end(buffer, position)
    constructor = buffer[position]
    if constructor == _SMALL_ULONG:
        return buffer[position + 1], end
    if constructor == _ULONG:
        return struct.unpack_from(">Q", buffer, position + 1)[0], end
    if constructor == _ULONG_ZERO:
        return 0, end
    if constructor in {_SYMBOL_8, _SYMBOL_32}:
        header = 2 if constructor == _SYMBOL_8 else 5
        name = bytes(buffer[position + header : end])
        if name in _SYMBOLIC_DESCRIPTORS:
            return _SYMBOLIC_DESCRIPTORS[name], end
    raise MalformedMessageError("unknown message section descriptor")


def split_sections(raw: bytes) -> list[tuple[int, bytes]]:
    """Split an encoded message into (section code, encoded section) pairs."""
    sections: list[tuple[int, bytes]] = []
    position = 0
    while position < len(raw):
        if raw[position] != 0x00:
            raise MalformedMessageError(f"expected a described section at byte {position}")
        code, _ = _descriptor_code(raw, position + 1)
        if code not in range(HEADER, FOOTER + 1):
            raise MalformedMessageError(f"unknown message section 0x{code:02x}")
        end = _value_end(raw, position)
        sections.append((code, raw[position:end]))
        position = end
    if not sections:
        raise MalformedMessageError("empty message")
    return sections


def _data_payload(section: bytes) -> bytes:
    _, start = _descriptor_code(section, 1)
    constructor = section[start]
    if constructor == _BINARY_8:
        return section[start + 2 :]
    if constructor == _BINARY_32:
        return section[start + 5 :]
    raise MalformedMessageError("a data section must hold binary")


def split_batch(raw: bytes) -> list[bytes] | None:
    """If `raw` is a batch envelope (each data section one whole message), return the inner messages.

    Proton does not expose a transfer's message format (0x80013700 marks batches), so a batch is
    recognised by its shape: no application properties, and every body section is a data section that
    itself decodes as a message with a body.
    """
    sections = split_sections(raw)
    codes = {code for code, _ in sections}
    if APPLICATION_PROPERTIES in codes or not codes & _BODY_CODES or not codes & _BODY_CODES <= {DATA}:
        return None
    inner: list[bytes] = []
    for code, section in sections:
        if code != DATA:
            continue
        payload = _data_payload(section)
        try:
            inner_codes = {inner_code for inner_code, _ in split_sections(payload)}
        except MalformedMessageError:
            return None
        if not inner_codes & _BODY_CODES:
            return None
        inner.append(payload)
    return inner


def encode_section(code: int, value: Any) -> bytes:
    """Encode one described section."""
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def decode_section(section: bytes) -> Any:
    """Decode one section's value (copied out of proton's buffers)."""
    data = Data()
    data.decode(section)
    data.rewind()
    data.next()
    described = data.get_object()
    value = described.value if isinstance(described, Described) else described
    return _detach(value)


def _detach(value: Any) -> Any:
    # Proton hands out binary values as views over its own buffers; copy them before the buffer is reused.
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return type(value)({_detach(key): _detach(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return [_detach(item) for item in value]
    if isinstance(value, Array):
        return [_detach(item) for item in value.elements]
    return value


def _plain(value: Any) -> Any:
    """A property value as filters compare it (AMQP strings/symbols as str, UUIDs as text)."""
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, bytes):
        return value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as the broker stores it: parsed routing fields plus the encoded bare message."""

    durable: bool
    priority: int
    ttl_ms: int | None
    annotations: dict[Any, Any]
    properties: list[Any]
    user_properties: dict[str, Any]
    body: bytes  # body sections and footer exactly as sent

    @property
    def message_id(self) -> str | None:
        value = self.properties[0] if self.properties else None
        return None if value is None else str(_plain(value))

    @property
    def session_id(self) -> str | None:
        value = self.properties[_SESSION_ID_INDEX] if len(self.properties) > _SESSION_ID_INDEX else None
        return None if value is None else str(value)

    @property
    def scheduled_enqueue_ms(self) -> int | None:
        value = self.annotations.get(SCHEDULED_ENQUEUE_TIME)
        return int(value) if value is not None else None

    def system_view(self) -> dict[str, Any]:
        """System properties for filters, keyed by lower-case SQL name."""
        view = {
            name: _plain(self.properties[index])
            for name, index in PROPERTY_FIELDS.items()
            if index < len(self.properties) and self.properties[index] is not None
        }
        if self.ttl_ms is not None:
            view["timetolive"] = self.ttl_ms / 1000
        return view

    def with_changes(
        self, *, system: dict[str, Any] | None = None, user: dict[str, Any] | None = None
    ) -> Envelope:
        """Return a copy with system properties and/or the user property map replaced."""
        properties = list(self.properties)
        if system is not None:
            properties += [None] * (13 - len(properties))
            for name, index in PROPERTY_FIELDS.items():
                properties[index] = system.get(name)
        return replace(
            self, properties=properties, user_properties=self.user_properties if user is None else user
        )

    def encode(self, *, delivery_count: int = 0, extra_annotations: dict[Any, Any] | None = None) -> bytes:
        """Encode the message with a fresh header and merged annotations."""
        ttl = uint(self.ttl_ms) if self.ttl_ms is not None else None
        header = encode_section(
            HEADER, [self.durable, ubyte(self.priority), ttl, False, uint(delivery_count)]
        )
        annotations = {**self.annotations, **(extra_annotations or {})}
        parts = [header]
        if annotations:
            parts.append(encode_section(MESSAGE_ANNOTATIONS, annotations))
        if any(value is not None for value in self.properties):
            parts.append(encode_section(PROPERTIES, self.properties))
        if self.user_properties:
            parts.append(encode_section(APPLICATION_PROPERTIES, self.user_properties))
        parts.append(self.body)
        return b"".join(parts)


def parse_message(raw: bytes) -> Envelope:
    """Parse an encoded message into an `Envelope`."""
    durable, priority, ttl_ms = False, 4, None
    annotations: dict[Any, Any] = {}
    properties: list[Any] = []
    user: dict[str, Any] = {}
    body: list[bytes] = []
    try:
        for code, section in split_sections(raw):
            if code == HEADER:
                fields = list(decode_section(section) or []) + [None] * 5
                durable = bool(fields[0])
                priority = int(fields[1]) if fields[1] is not None else 4
                ttl_ms = int(fields[2]) if fields[2] is not None else None
            elif code == MESSAGE_ANNOTATIONS:
                annotations = dict(decode_section(section) or {})
            elif code == PROPERTIES:
                properties = list(decode_section(section) or [])
            elif code == APPLICATION_PROPERTIES:
                user = {str(key): value for key, value in dict(decode_section(section) or {}).items()}
            elif code != DELIVERY_ANNOTATIONS:
                body.append(bytes(section))
    except MalformedMessageError:
        raise
    except Exception as error:
        raise MalformedMessageError(f"undecodable message section: {error}") from error
    if not body:
        raise MalformedMessageError("a message needs a body section")
    return Envelope(durable, priority, ttl_ms, annotations, properties, user, b"".join(body))


def delivery_annotations(
    *, sequence_number: int, enqueued_ms: int, locked_until_ms: int | None, dead_letter_source: str | None
) -> dict[Any, Any]:
    """The broker-stamped annotations a received message carries."""
    stamped: dict[Any, Any] = {
        SEQUENCE_NUMBER: sequence_number,
        ENQUEUED_TIME: timestamp(enqueued_ms),
    }
    if locked_until_ms is not None:
        stamped[LOCKED_UNTIL] = timestamp(locked_until_ms)
    if dead_letter_source is not None:
        stamped[DEAD_LETTER_SOURCE] = dead_letter_source
    return stamped
