"""AMQP 1.0 message sections: split what a sender sent, read what routing needs, re-encode for delivery.

The broker keeps the bare message (properties, application properties, body) as the sender encoded it and
only rewrites the header and message annotations on delivery, so body types and property types reach the
receiver unchanged. Proton's `Message` class is not used for that because it merges multiple body sections.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, replace
from typing import Any

from proton import Array, Data, Described, symbol, timestamp, ulong

from devstack.servicebus.errors import BadRequestError

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
_MAP_8, _MAP_32 = 0xC1, 0xD1
_SHORT_LIMIT = 256
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
MESSAGE_STATE = symbol("x-opt-message-state")


class MalformedMessageError(BadRequestError):
    """Bytes that are not an AMQP 1.0 message."""


def value_end(buffer: bytes, position: int) -> int:
    """Return where the encoded AMQP value starting at `position` ends."""
    try:
        code = buffer[position]
        position += 1
        if code == 0x00:  # described: a descriptor value, then the value itself
            return value_end(buffer, value_end(buffer, position))
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
    end = value_end(buffer, position)
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
        end = value_end(raw, position)
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


def split_batch(raw: bytes) -> list[list[tuple[int, bytes]]]:
    """Split a transfer into its messages' sections: one message, or each message of a batch envelope.

    Proton does not expose a transfer's message format (0x80013700 marks batches), so a batch is
    recognised by its shape: no application properties, and every body section is a data section that
    itself decodes as a message with a body.
    """
    sections = split_sections(raw)
    codes = {code for code, _ in sections}
    if APPLICATION_PROPERTIES in codes or not codes & _BODY_CODES or not codes & _BODY_CODES <= {DATA}:
        return [sections]
    inner: list[list[tuple[int, bytes]]] = []
    for code, section in sections:
        if code != DATA:
            continue
        try:
            inner_sections = split_sections(_data_payload(section))
        except MalformedMessageError:
            return [sections]
        if not {inner_code for inner_code, _ in inner_sections} & _BODY_CODES:
            return [sections]
        inner.append(inner_sections)
    return inner


def encode_section(code: int, value: Any) -> bytes:
    """Encode one described section."""
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def decode_section(section: bytes) -> Any:
    """Decode one section's value (copied out of proton's buffers)."""
    data = Data()
    try:
        data.decode(section)
        data.rewind()
        data.next()
        described = data.get_object()
    except Exception as error:
        raise MalformedMessageError(f"undecodable message section: {error}") from error
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


@dataclass(frozen=True)
class Stamps:
    """What the broker adds to a message it hands out."""

    sequence_number: int
    enqueued_ms: int
    locked_until_ms: int | None = None
    dead_letter_source: str | None = None
    message_state: int = 0  # 0 active (left out, the default), 1 deferred, 2 scheduled


@dataclass(frozen=True)
class Envelope:
    """A message as the broker stores it: the sections as sent, decoded only when something needs them.

    Delivering a message re-encodes only the header and the message annotations, by hand; properties,
    application properties and body go out as the bytes that came in (hot path: no decode, no re-encode).
    """

    header: bytes | None
    annotations_section: bytes | None
    properties_section: bytes | None
    application_section: bytes | None
    body: bytes  # body sections and footer exactly as sent

    @functools.cached_property
    def _header_fields(self) -> tuple[bool, int, int | None]:
        fields = list(decode_section(self.header) or []) if self.header else []
        fields += [None] * 5
        priority = int(fields[1]) if fields[1] is not None else 4
        return bool(fields[0]), priority, int(fields[2]) if fields[2] is not None else None

    @property
    def ttl_ms(self) -> int | None:
        return self._header_fields[2]

    @functools.cached_property
    def annotations(self) -> dict[Any, Any]:
        return dict(decode_section(self.annotations_section) or {}) if self.annotations_section else {}

    @functools.cached_property
    def properties(self) -> list[Any]:
        return list(decode_section(self.properties_section) or []) if self.properties_section else []

    @functools.cached_property
    def user_properties(self) -> dict[str, Any]:
        if not self.application_section:
            return {}
        return {
            str(key): value for key, value in dict(decode_section(self.application_section) or {}).items()
        }

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
        # Most messages are not scheduled: look for the key's bytes before decoding anything.
        if (
            not self.annotations_section
            or str(SCHEDULED_ENQUEUE_TIME).encode() not in self.annotations_section
        ):
            return None
        value = self.annotations.get(SCHEDULED_ENQUEUE_TIME)
        return int(value) if value is not None else None

    def system_view(self) -> dict[str, Any]:
        """System properties for filters, keyed by lower-case SQL name."""
        properties = self.properties
        view = {
            name: _plain(properties[index])
            for name, index in PROPERTY_FIELDS.items()
            if index < len(properties) and properties[index] is not None
        }
        if self.ttl_ms is not None:
            view["timetolive"] = self.ttl_ms / 1000
        return view

    def with_changes(
        self, *, system: dict[str, Any] | None = None, user: dict[str, Any] | None = None
    ) -> Envelope:
        """Return a copy with system properties and/or the user property map replaced."""
        properties_section = self.properties_section
        if system is not None:
            properties = list(self.properties) + [None] * (13 - len(self.properties))
            for name, index in PROPERTY_FIELDS.items():
                properties[index] = system.get(name)
            properties_section = encode_section(PROPERTIES, properties)
        application_section = self.application_section
        if user is not None:
            application_section = encode_section(APPLICATION_PROPERTIES, user) if user else None
        return replace(self, properties_section=properties_section, application_section=application_section)

    def encode(self, *, delivery_count: int = 0, stamps: Stamps | None = None) -> bytes:
        """Encode the message with a fresh header and the broker's annotations."""
        durable, priority, ttl_ms = self._header_fields if self.header else (False, 4, None)
        parts = [
            _encode_header(durable=durable, priority=priority, ttl_ms=ttl_ms, delivery_count=delivery_count)
        ]
        annotations = self._annotations_with(stamps)
        if annotations:
            parts.append(annotations)
        if self.properties_section:
            parts.append(self.properties_section)
        if self.application_section:
            parts.append(self.application_section)
        parts.append(self.body)
        return b"".join(parts)

    def _annotations_with(self, stamps: Stamps | None) -> bytes | None:
        if stamps is None:
            return self.annotations_section
        entries, count = _stamp_entries(stamps)
        if self.annotations_section:
            if any(key in self.annotations_section for key in _STAMPED_KEYS):
                # The sender copied broker annotations (e.g. re-sent a received message): merge by key.
                merged = {**self.annotations, **_stamps_dict(stamps)}
                return encode_section(MESSAGE_ANNOTATIONS, merged)
            own_entries, own_count = _map_entries(self.annotations_section)
            entries, count = own_entries + entries, own_count + count
        return _encode_map_section(MESSAGE_ANNOTATIONS, entries, count)


_STAMPED_KEYS = tuple(
    str(key).encode() for key in (SEQUENCE_NUMBER, ENQUEUED_TIME, LOCKED_UNTIL, DEAD_LETTER_SOURCE)
)


def _encode_header(*, durable: bool, priority: int, ttl_ms: int | None, delivery_count: int) -> bytes:
    fields = (
        (b"\x41" if durable else b"\x42")
        + b"\x50" + bytes([priority & 0xFF])
        + (b"\x70" + struct.pack(">I", ttl_ms & 0xFFFFFFFF) if ttl_ms is not None else b"\x40")
        + b"\x42"  # first-acquirer
        + b"\x70" + struct.pack(">I", delivery_count & 0xFFFFFFFF)
    )  # fmt: skip
    return b"\x00\x53\x70\xc0" + bytes([len(fields) + 1, 5]) + fields


def _symbol(name: str) -> bytes:
    encoded = name.encode()
    return b"\xa3" + bytes([len(encoded)]) + encoded


def _string(text: str) -> bytes:
    encoded = text.encode()
    if len(encoded) < _SHORT_LIMIT:
        return b"\xa1" + bytes([len(encoded)]) + encoded
    return b"\xb1" + struct.pack(">I", len(encoded)) + encoded


def _stamp_entries(stamps: Stamps) -> tuple[bytes, int]:
    entries = [
        _symbol(str(SEQUENCE_NUMBER)) + b"\x81" + struct.pack(">q", stamps.sequence_number),
        _symbol(str(ENQUEUED_TIME)) + b"\x83" + struct.pack(">q", stamps.enqueued_ms),
    ]
    if stamps.locked_until_ms is not None:
        entries.append(_symbol(str(LOCKED_UNTIL)) + b"\x83" + struct.pack(">q", stamps.locked_until_ms))
    if stamps.dead_letter_source is not None:
        entries.append(_symbol(str(DEAD_LETTER_SOURCE)) + _string(stamps.dead_letter_source))
    if stamps.message_state:
        entries.append(_symbol(str(MESSAGE_STATE)) + b"\x81" + struct.pack(">q", stamps.message_state))
    return b"".join(entries), 2 * len(entries)


def _stamps_dict(stamps: Stamps) -> dict[Any, Any]:
    stamped: dict[Any, Any] = {
        SEQUENCE_NUMBER: stamps.sequence_number,
        ENQUEUED_TIME: timestamp(stamps.enqueued_ms),
    }
    if stamps.locked_until_ms is not None:
        stamped[LOCKED_UNTIL] = timestamp(stamps.locked_until_ms)
    if stamps.dead_letter_source is not None:
        stamped[DEAD_LETTER_SOURCE] = stamps.dead_letter_source
    if stamps.message_state:
        stamped[MESSAGE_STATE] = stamps.message_state
    return stamped


def _map_entries(section: bytes) -> tuple[bytes, int]:
    """The encoded key/value entries of a map section and how many elements they hold."""
    _, start = _descriptor_code(section, 1)
    constructor = section[start]
    if constructor == _MAP_8:
        return section[start + 3 :], section[start + 2]
    if constructor == _MAP_32:
        count = struct.unpack_from(">I", section, start + 5)[0]
        return section[start + 9 :], count
    return b"", 0  # null: no annotations


def _encode_map_section(code: int, entries: bytes, count: int) -> bytes:
    return b"\x00\x53" + bytes([code]) + b"\xd1" + struct.pack(">II", len(entries) + 4, count) + entries


def parse_sections(sections: list[tuple[int, bytes]]) -> Envelope:
    """Build an `Envelope` from split sections (nothing is decoded yet)."""
    found: dict[int, bytes] = {}
    body: list[bytes] = []
    for code, section in sections:
        if code in {HEADER, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES}:
            found[code] = bytes(section)
        elif code != DELIVERY_ANNOTATIONS:
            body.append(bytes(section))
    if not body:
        raise MalformedMessageError("a message needs a body section")
    envelope = Envelope(
        header=found.get(HEADER),
        annotations_section=found.get(MESSAGE_ANNOTATIONS),
        properties_section=found.get(PROPERTIES),
        application_section=found.get(APPLICATION_PROPERTIES),
        body=b"".join(body),
    )
    try:
        # Every enqueue needs the header (time to live); other sections are decoded only when routing,
        # filters or duplicate detection ask, and go out to receivers as the bytes that came in.
        _ = envelope.ttl_ms
    except Exception as error:
        raise MalformedMessageError(f"undecodable message header: {error}") from error
    return envelope


def parse_message(raw: bytes) -> Envelope:
    """Parse an encoded message into an `Envelope`."""
    return parse_sections(split_sections(raw))
