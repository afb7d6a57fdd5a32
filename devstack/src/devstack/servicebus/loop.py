"""A small selector loop that drives proton connections, in place of proton's pure-Python reactor.

Proton's reactor routes every protocol event through several layers of Python dispatch, selectables and
timers; under load that, not the broker, dominated the emulator's CPU time. This loop does only what the
emulator needs: accept sockets, move bytes between sockets and proton transports, hand collector events to
the handler, call a periodic tick, and let the handler commit before any byte is written.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from proton import Collector, Connection, Event, Transport

from devstack.servicebus.delivery_ids import IncomingDeliveryIds

if TYPE_CHECKING:
    from collections.abc import Callable

_log = logging.getLogger("devstack.servicebus")
_READ_CHUNK = 64 * 1024


class EventHandler(Protocol):
    """What the loop needs from the protocol handler."""

    def tick(self) -> None: ...

    def before_write(self) -> None: ...

    def shutdown(self) -> None: ...


@dataclass(eq=False)
class _Channel:
    sock: socket.socket
    transport: Transport
    connection: Connection
    inbound: IncomingDeliveryIds
    # Bytes read and filtered but not yet taken by proton (the filter may hold back or add a few bytes).
    backlog: bytearray
    events: int = 0  # the selector interest currently registered
    closed: bool = False


class ProtonLoop:
    """Serve AMQP connections on one listening socket until `should_stop()` is true."""

    def __init__(self, handler: EventHandler, *, host: str, port: int, tick_seconds: float) -> None:
        self._handler = handler
        self._tick_seconds = tick_seconds
        self._collector = Collector()
        self._selector = selectors.DefaultSelector()
        self._channels: list[_Channel] = []
        self._by_transport: dict[Transport, _Channel] = {}
        # Channels that may have output or a changed state since they were last looked at: those with
        # socket activity, those proton raised a transport event for, and all of them after a tick.
        self._dirty: set[_Channel] = set()
        self._listener = socket.create_server((host, port))  # SO_REUSEADDR on POSIX
        self._listener.settimeout(0.0)  # non-blocking
        self._selector.register(self._listener, selectors.EVENT_READ, None)

    def run(self, should_stop: Callable[[], bool]) -> None:
        next_tick = time.monotonic()
        try:
            while not should_stop():
                # A channel left dirty (proton took only part of a backlog) is served again at once.
                timeout = 0.0 if self._dirty else max(0.0, next_tick - time.monotonic())
                for key, mask in self._selector.select(timeout):
                    if key.data is None:
                        self._accept()
                    else:
                        self._service(key.data, mask)
                now = time.monotonic()
                if now >= next_tick:
                    self._handler.tick()
                    for channel in self._channels:
                        channel.transport.tick(now)  # heartbeats and idle timeouts
                    self._dirty.update(self._channels)
                    next_tick = now + self._tick_seconds
                self._settle_events()
            self._handler.shutdown()
            self._dirty.update(self._channels)
            self._settle_events()
        finally:
            for channel in list(self._channels):
                self._close(channel)
            self._selector.unregister(self._listener)
            self._listener.close()
            self._selector.close()

    def _settle_events(self) -> None:
        """Dispatch pending events, let the handler commit, then write and update interest."""
        self._dispatch()
        self._handler.before_write()
        dirty, self._dirty = self._dirty, set()
        for channel in dirty:
            if not channel.closed:
                self._write(channel)
                self._update(channel)

    def _dispatch(self) -> None:
        while (event := self._collector.peek()) is not None:
            if event.type is Event.TRANSPORT and (transport := event.transport) is not None:
                channel = self._by_transport.get(transport)
                if channel is not None:
                    self._dirty.add(channel)
            method = getattr(self._handler, event.type.method, None)
            try:
                if method is not None:
                    method(event)
            except Exception:  # noqa: BLE001 - a handler bug must not stop the server
                _log.exception("unhandled error in %s", event.type.method)
            self._collector.pop()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                _log.exception("accepting a connection failed")
                return
            sock.settimeout(0.0)  # non-blocking
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection()
            connection.collect(self._collector)
            transport = Transport(Transport.SERVER)
            transport.bind(connection)  # the handler sets up SASL on the bound event
            channel = _Channel(sock, transport, connection, IncomingDeliveryIds(), bytearray())
            self._channels.append(channel)
            self._by_transport[transport] = channel
            self._dirty.add(channel)
            self._selector.register(sock, selectors.EVENT_READ, channel)
            channel.events = selectors.EVENT_READ

    def _service(self, channel: _Channel, mask: int) -> None:
        self._dirty.add(channel)
        transport = channel.transport
        if mask & selectors.EVENT_READ:
            self._push_backlog(channel)
            capacity = _capacity(transport)
            if capacity > 0 and not channel.backlog:
                try:
                    data = channel.sock.recv(min(capacity, _READ_CHUNK))
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data:
                    channel.backlog += channel.inbound.feed(data)
                    self._push_backlog(channel)
                elif data == b"":
                    # The peer closed or reset the socket: nothing more will come or can go.
                    _quietly(transport.close_tail)
                    _quietly(transport.close_head)
        if mask & selectors.EVENT_WRITE:
            self._write(channel)

    @staticmethod
    def _push_backlog(channel: _Channel) -> None:
        """Give proton as much of the filtered input as it has room for."""
        backlog, transport = channel.backlog, channel.transport
        count = min(_capacity(transport), len(backlog))
        if count <= 0:
            return
        try:
            transport.push(bytes(backlog[:count]))
        except Exception:  # noqa: BLE001 - a failed transport takes no more input
            backlog.clear()
            _quietly(transport.close_tail)
            return
        del backlog[:count]

    def _write(self, channel: _Channel) -> None:
        transport = channel.transport
        pending = _pending(transport)
        if pending <= 0:
            return
        try:
            sent = channel.sock.send(transport.peek(pending) or b"")
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            _quietly(transport.close_head)
            _quietly(transport.close_tail)
            return
        transport.pop(sent)

    def _update(self, channel: _Channel) -> None:
        transport = channel.transport
        capacity, pending = _capacity(transport), _pending(transport)
        if transport.closed or (capacity < 0 and pending < 0):
            self._dispatch()  # let the handler see the transport close before the channel goes
            self._close(channel)
            return
        if channel.backlog and capacity > 0:
            self._push_backlog(channel)
            self._dirty.add(channel)  # dispatch what proton made of it on the next turn
            capacity = _capacity(transport)
        # With no room for input and nothing to send the socket is left out of the selector; this method
        # runs again after every burst of events and every tick, and puts it back when that changes.
        readable = capacity > 0 and not channel.backlog
        wanted = (selectors.EVENT_READ if readable else 0) | (selectors.EVENT_WRITE if pending > 0 else 0)
        if wanted != channel.events:
            if channel.events == 0:
                self._selector.register(channel.sock, wanted, channel)
            elif wanted == 0:
                self._selector.unregister(channel.sock)
            else:
                self._selector.modify(channel.sock, wanted, channel)
            channel.events = wanted

    def _close(self, channel: _Channel) -> None:
        channel.closed = True
        if channel in self._channels:
            self._channels.remove(channel)
        self._by_transport.pop(channel.transport, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(channel.sock)
        channel.sock.close()
        _quietly(channel.transport.unbind)


def _capacity(transport: Transport) -> int:
    try:
        return int(transport.capacity())
    except Exception:  # noqa: BLE001 - proton raises when the transport failed; treat it as closed
        return -1


def _pending(transport: Transport) -> int:
    try:
        return int(transport.pending())
    except Exception:  # noqa: BLE001 - proton raises when the transport failed; treat it as closed
        return -1


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - closing a transport that already failed is not an error
        _log.debug("ignoring an error while closing a transport", exc_info=True)
