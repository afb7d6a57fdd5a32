"""Unit tests: the filter that numbers a client's transfers the way proton expects (no server)."""

from __future__ import annotations

import struct

from devstack.servicebus.delivery_ids import IncomingDeliveryIds

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
BEGIN, TRANSFER, DISPOSITION = 0x11, 0x14, 0x15


def _uint(value: int) -> bytes:
    return b"\x70" + struct.pack(">I", value)


def _small_uint(value: int) -> bytes:
    return b"\x52" + bytes([value])


def _boolean(*, value: bool) -> bytes:
    return b"\x41" if value else b"\x42"


def _frame(code: int, fields: list[bytes], *, channel: int = 0, payload: bytes = b"") -> bytes:
    elements = b"".join(fields)
    performative = b"\x00\x53" + bytes([code, 0xC0, len(elements) + 1, len(fields)]) + elements
    body = performative + payload
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


def _transfer(handle: int, delivery_id: bytes, *, more: bool = False, payload: bytes = b"x") -> bytes:
    tag = b"\xa0\x01" + bytes([handle])
    fields = [_small_uint(handle), delivery_id, tag, _uint(0), _boolean(value=False), _boolean(value=more)]
    return _frame(TRANSFER, fields, payload=payload)


def _begin(next_outgoing_id: int) -> bytes:
    return _frame(BEGIN, [b"\x40", _uint(next_outgoing_id), _uint(100), _uint(100)])


def _transfers(stream: bytes) -> list[tuple[int, int, bytes]]:
    """(handle, delivery-id, payload) of each transfer frame in a stream."""
    found, position = [], 0
    while position < len(stream):
        if stream[position : position + 4] == b"AMQP":
            position += 8
            continue
        size, offset = struct.unpack_from(">IB", stream, position)
        frame = stream[position : position + size]
        body = frame[offset * 4 :]
        if body[2] == TRANSFER:
            fields_start = 3
            constructor = body[fields_start]
            elements = body[fields_start + 3 :] if constructor == 0xC0 else body[fields_start + 9 :]
            handle = elements[1]
            id_code = elements[2]
            delivery_id = struct.unpack_from(">I", elements, 3)[0] if id_code == 0x70 else elements[3]
            size_field = body[fields_start + 1] if constructor == 0xC0 else 0
            list_end = (
                fields_start + 2 + size_field
                if constructor == 0xC0
                else fields_start + 5 + struct.unpack_from(">I", body, fields_start + 1)[0]
            )
            found.append((handle, delivery_id, body[list_end:]))
        position += size
    return found


def _feed_in_pieces(stream: bytes, piece: int) -> bytes:
    ids = IncomingDeliveryIds()
    return b"".join(ids.feed(stream[start : start + piece]) for start in range(0, len(stream), piece))


def test_repeated_ids_of_concurrent_requests_become_consecutive():
    # What the SDK sends for requests issued at once: every transfer carries the same id.
    requests = b"".join(_transfer(4, _small_uint(1)) for _ in range(16))
    stream = AMQP_HEADER + _begin(0) + _transfer(1, _small_uint(0)) + requests
    out = IncomingDeliveryIds().feed(stream)
    assert [delivery_id for _, delivery_id, _ in _transfers(out)] == list(range(17))
    assert [payload for _, _, payload in _transfers(out)] == [b"x"] * 17


def test_a_stream_already_in_order_passes_unchanged_whatever_the_chunking():
    stream = AMQP_HEADER + _begin(7) + b"".join(_transfer(1, _uint(7 + n)) for n in range(5))
    stream += _frame(DISPOSITION, [b"\x41", _uint(0)])
    for piece in (1, 3, 8, 64, len(stream)):
        assert _feed_in_pieces(stream, piece) == stream


def test_renumbering_is_the_same_when_bytes_arrive_one_at_a_time():
    same_id = b"".join(_transfer(2, _small_uint(0), payload=b"p" * 40) for _ in range(4))
    stream = AMQP_HEADER + _begin(0) + same_id
    whole = IncomingDeliveryIds().feed(stream)
    assert _feed_in_pieces(stream, 1) == whole
    assert [delivery_id for _, delivery_id, _ in _transfers(whole)] == [0, 1, 2, 3]


def test_continuation_frames_keep_their_delivery_id():
    first = _transfer(1, _small_uint(0), more=True, payload=b"part-1")
    rest = _transfer(1, _small_uint(0), more=False, payload=b"part-2")
    other = _transfer(3, _small_uint(0), payload=b"other")
    out = IncomingDeliveryIds().feed(AMQP_HEADER + _begin(0) + first + other + rest)
    assert _transfers(out) == [(1, 0, b"part-1"), (3, 1, b"other"), (1, 0, b"part-2")]


def test_bytes_that_are_not_amqp_frames_reach_proton_unchanged():
    garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _feed_in_pieces(garbage, 5) == garbage


def test_a_frame_too_short_to_be_one_is_passed_on_and_ends_the_filtering():
    stream = AMQP_HEADER + b"\x00\x00\x00\x00\x02\x00\x00\x00" + _begin(0) + _transfer(1, _small_uint(5))
    assert _feed_in_pieces(stream, 4) == stream
