"""Number the client's transfers the way proton requires, before proton reads them.

AMQP 1.0 has the sender of a session number its deliveries one after another (delivery-id), and proton's
transport closes the connection on any gap or repeat ("sequencing error, expected delivery-id 2, got 1").
The official SDK breaks that rule when it sends concurrently: its session reads the next delivery-id, then
awaits the socket write, then increments, so requests sent at once (concurrent lock renewals on the
`$management` link, for example) all carry the same id. Azure Service Bus accepts them. So does the
emulator: this filter sits between the socket and proton and gives each new delivery the id the session
expects (continuation frames of a multi-frame delivery get that delivery's id). Frames are passed on byte
for byte except for a rewritten transfer header; anything it cannot read goes to proton unchanged.
"""

from __future__ import annotations

import logging
import struct

from devstack.servicebus.messages import MalformedMessageError, value_end

_log = logging.getLogger("devstack.servicebus")

_PROTOCOL_HEADER = b"AMQP"
_FRAME_HEADER_SIZE = 8
_AMQP_FRAME = 0
_BEGIN, _TRANSFER, _END = 0x11, 0x14, 0x17
_DESCRIBED, _SMALL_ULONG, _ULONG = 0x00, 0x53, 0x80
_LIST_0, _LIST_8, _LIST_32 = 0x45, 0xC0, 0xD0
_NULL, _TRUE, _FALSE, _BOOLEAN = 0x40, 0x41, 0x42, 0x56
_UINT_0, _SMALL_UINT, _UINT = 0x43, 0x52, 0x70
# A transfer's performative is a few dozen bytes; a longer one is passed on as it is.
_MAX_PERFORMATIVE = 4096
# Transfer fields by position.
_HANDLE, _DELIVERY_ID, _MORE, _ABORTED = 0, 1, 5, 9
_BEGIN_NEXT_OUTGOING_ID = 1
_SEQUENCE_MASK = 0xFFFFFFFF


class _NeedMoreBytesError(Exception):
    """The frame's performative has not fully arrived yet."""


class IncomingDeliveryIds:
    """A byte-stream filter for one connection: renumbers the delivery-ids of incoming transfers."""

    def __init__(self) -> None:
        self._held = bytearray()  # the start of a frame that cannot be passed on before it is read
        self._passthrough = 0  # bytes of the current frame that go on unchanged
        self._next_id: dict[int, int] = {}  # channel -> the delivery-id proton expects next
        self._unfinished: dict[tuple[int, int], int] = {}  # (channel, handle) -> id of a multi-frame delivery
        self._gave_up = False

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the socket; return the bytes proton may read now (possibly fewer, or more)."""
        if self._gave_up:
            return data
        out = bytearray()
        position = 0
        if self._passthrough:
            position = min(self._passthrough, len(data))
            out += data[:position]
            self._passthrough -= position
        self._held += data[position:]
        try:
            while self._held and self._frame_ready(out):
                pass
        except (MalformedMessageError, IndexError, struct.error):
            # Not a stream this filter understands: hand everything to proton, which reports the error.
            _log.debug("passing an unreadable AMQP stream to proton unchanged", exc_info=True)
            self._gave_up = True
            out += self._held
            self._held.clear()
        return bytes(out)

    def _frame_ready(self, out: bytearray) -> bool:
        """Pass on the frame at the start of the held bytes; False if it needs more bytes first."""
        held = self._held
        if len(held) < _FRAME_HEADER_SIZE:
            return False
        if held[:4] == _PROTOCOL_HEADER:
            self._emit(out, _FRAME_HEADER_SIZE)
            return True
        size, offset, frame_type, channel = struct.unpack_from(">IBBH", held)
        body = offset * 4
        if size < _FRAME_HEADER_SIZE or body < _FRAME_HEADER_SIZE:
            # Not a frame (proton reports it); without a size there is nothing left to find frames in.
            raise MalformedMessageError(f"a frame of {size} bytes with a {body}-byte header")
        rewritten = None
        if frame_type == _AMQP_FRAME and size > body:
            try:
                rewritten = self._read_performative(held, body, min(size, len(held)), channel)
            except _NeedMoreBytesError:
                if len(held) < size and len(held) - body < _MAX_PERFORMATIVE:
                    return False
                # Truncated or oversized: proton decides what it is.
        if rewritten is None:
            self._emit(out, size)
            return True
        performative, old_length = rewritten
        new_size = size - old_length + len(performative)
        out += struct.pack(">I", new_size) + held[4:body] + performative
        del held[: body + old_length]
        self._emit(out, size - body - old_length)
        return True

    def _emit(self, out: bytearray, count: int) -> None:
        """Pass on the rest of the current frame (`count` bytes): those held now, the others as they come."""
        available = min(count, len(self._held))
        out += self._held[:available]
        del self._held[:available]
        self._passthrough = count - available

    def _read_performative(
        self, buffer: bytearray, start: int, end: int, channel: int
    ) -> tuple[bytes, int] | None:
        """Track begin/end/transfer; return a transfer's renumbered performative and its old length."""
        frame = bytes(buffer[start:end])
        if len(frame) < 3:  # noqa: PLR2004 - the shortest descriptor
            raise _NeedMoreBytesError
        if frame[0] != _DESCRIBED:
            return None
        if frame[1] == _SMALL_ULONG:
            code, list_start = frame[2], 3
        elif frame[1] == _ULONG:
            if len(frame) < 10:  # noqa: PLR2004 - 0x00 0x80 and eight bytes
                raise _NeedMoreBytesError
            code, list_start = struct.unpack_from(">Q", frame, 2)[0], 10
        else:
            return None
        if code not in {_BEGIN, _TRANSFER, _END}:
            return None
        fields, list_end = _list_fields(frame, list_start)
        if code == _END:
            self._forget(channel)
            return None
        if code == _BEGIN:
            next_id = _uint(frame, fields, _BEGIN_NEXT_OUTGOING_ID)
            self._forget(channel)
            if next_id is not None:
                self._next_id[channel] = next_id
            return None
        return self._renumber(frame, fields, list_start, list_end, channel)

    def _renumber(
        self,
        frame: bytes,
        fields: list[tuple[int, int]],
        list_start: int,
        list_end: int,
        channel: int,
    ) -> tuple[bytes, int] | None:
        handle = _uint(frame, fields, _HANDLE)
        sent_id = _uint(frame, fields, _DELIVERY_ID)
        expected = self._next_id.get(channel)
        if handle is None or expected is None:
            return None
        key = (channel, handle)
        delivery_id = self._unfinished.get(key)
        if delivery_id is None:
            if sent_id is None:
                return None  # a new delivery without an id: proton reports it
            delivery_id = expected
            self._next_id[channel] = (expected + 1) & _SEQUENCE_MASK
        if _flag(frame, fields, _MORE) and not _flag(frame, fields, _ABORTED):
            self._unfinished[key] = delivery_id
        else:
            self._unfinished.pop(key, None)
        if sent_id is None or sent_id == delivery_id:
            return None
        id_start, id_end = fields[_DELIVERY_ID]
        elements = frame[fields[0][0] : id_start] + b"\x70" + struct.pack(">I", delivery_id)
        elements += frame[id_end:list_end]
        header = bytes([_LIST_32]) + struct.pack(">II", len(elements) + 4, len(fields))
        return frame[:list_start] + header + elements, list_end

    def _forget(self, channel: int) -> None:
        self._next_id.pop(channel, None)
        for key in [key for key in self._unfinished if key[0] == channel]:
            del self._unfinished[key]


def _list_fields(frame: bytes, start: int) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) of each field of the list at `start`, and where the list ends."""
    if start >= len(frame):
        raise _NeedMoreBytesError
    constructor = frame[start]
    if constructor == _LIST_0:
        return [], start + 1
    if constructor == _LIST_8:
        if start + 3 > len(frame):
            raise _NeedMoreBytesError
        size, count, position = frame[start + 1], frame[start + 2], start + 3
        end = start + 2 + size
    elif constructor == _LIST_32:
        if start + 9 > len(frame):
            raise _NeedMoreBytesError
        size, count = struct.unpack_from(">II", frame, start + 1)
        position, end = start + 9, start + 5 + size
    else:
        raise MalformedMessageError(f"a performative must be a list, not 0x{constructor:02x}")
    if end > len(frame):
        raise _NeedMoreBytesError
    fields = []
    for _ in range(count):
        field_end = value_end(frame, position)
        fields.append((position, field_end))
        position = field_end
    return fields, end


def _uint(frame: bytes, fields: list[tuple[int, int]], index: int) -> int | None:
    if index >= len(fields):
        return None
    start, _ = fields[index]
    constructor = frame[start]
    if constructor == _UINT_0:
        return 0
    if constructor == _SMALL_UINT:
        return frame[start + 1]
    if constructor == _UINT:
        return int(struct.unpack_from(">I", frame, start + 1)[0])
    if constructor == _NULL:
        return None
    raise MalformedMessageError(f"expected a uint, not 0x{constructor:02x}")


def _flag(frame: bytes, fields: list[tuple[int, int]], index: int) -> bool:
    if index >= len(fields):
        return False
    start, _ = fields[index]
    constructor = frame[start]
    if constructor == _BOOLEAN:
        return frame[start + 1] != 0
    return constructor == _TRUE
