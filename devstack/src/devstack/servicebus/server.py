"""The AMQP 1.0 front end: proton event handlers that map connections, links and deliveries onto the broker.

Link kinds, by address:
- target `$cbs` / source `$cbs`: claims-based security (put-token) requests and replies;
- target `<entity>/$management` / source `<entity>/$management`: management requests and replies;
- target `<queue or topic>`: a sender's messages; source `<entity>` (or its `$deadletterqueue`): a receiver.

Every handler is guarded: a bad frame or an unexpected failure closes the offending link or connection
with an error condition, never the server.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from proton import Delivery, Disposition, Link, Terminus, symbol, ulong

from devstack.servicebus.auth import SAS_TOKEN_TYPE, SharedAccessKey, audience_path, grants, verify_token
from devstack.servicebus.errors import (
    BadRequestError,
    BrokerError,
    EntityNotFoundError,
    OperationTimeoutError,
    UnauthorizedError,
)
from devstack.servicebus.links import (
    SESSION_FILTER,
    ConnectionState,
    ConsumerLink,
    PendingSession,
    connection_state,
    error_condition,
    link_role,
    pair_key,
    read_settlement,
    requested_session,
)
from devstack.servicebus.loop import ProtonLoop
from devstack.servicebus.management import ManagementContext, ManagementReply, handle_request
from devstack.servicebus.messages import MalformedMessageError
from devstack.servicebus.request_reply import Request, encode_reply, parse_request

if TYPE_CHECKING:
    from devstack.servicebus.broker import Broker
    from devstack.servicebus.entities import MessageEntity, SendTarget

_log = logging.getLogger("devstack.servicebus")

CBS_ADDRESS = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
# How long (ms) a next-available-session receiver is willing to wait for a session, as the SDK asks.
OPERATION_TIMEOUT = symbol("com.microsoft:timeout")
# .NET ticks (100 ns) at the Unix epoch: Azure reports session lock expiry as a DateTimeOffset.
_DOTNET_EPOCH_TICKS = 621355968000000000
_SENDER_CREDIT = 500
_TICK_SECONDS = 0.05
_DEFAULT_SESSION_WAIT_SECONDS = 30.0
_NULL_TERMINUS_CONDITIONS = frozenset({EntityNotFoundError.condition, OperationTimeoutError.condition})

_Handler = TypeVar("_Handler", bound=Callable[..., None])


def _guarded(method: _Handler) -> _Handler:
    """Turn an exception in an event handler into a closed link or connection instead of a dead server."""

    @functools.wraps(method)
    def wrapper(self: EmulatorHandler, event: Any) -> None:
        try:
            method(self, event)
        except Exception as error:  # noqa: BLE001 - any failure must end the link, not the server
            _log.exception("error handling %s", getattr(event, "type", "event"))
            condition = error_condition("amqp:internal-error", f"emulator error: {error}")
            if event.link is not None:
                role, value = link_role(event.link)
                if role == "receive":
                    self._close_consumer(value)  # the broker must stop delivering to this link
            endpoint = event.link if event.link is not None else event.connection
            if endpoint is not None and not endpoint.state & Link.LOCAL_CLOSED:
                endpoint.condition = condition
                endpoint.close()

    return wrapper  # type: ignore[return-value]


class EmulatorHandler:
    """Proton event handler: routes connection, link and delivery events to the broker."""

    def __init__(self, broker: Broker, *, rule: SharedAccessKey) -> None:
        self.broker = broker
        self.rule = rule
        self.connections: list[Any] = []

    # Lifecycle -----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Periodic work: scheduled messages, expiries, waiting session receivers."""
        try:
            self.broker.tick()
            self._retry_pending_sessions()
        except Exception:  # noqa: BLE001 - the timer must keep running whatever one tick hit
            _log.exception("periodic broker work failed")

    def before_write(self) -> None:
        # Called before any byte goes out, so no client is told "accepted" or "completed" before the
        # change is on disk, at one commit per burst of events.
        try:
            self.broker.flush()
        except Exception:  # noqa: BLE001 - a failed commit must be logged, not end the server
            _log.exception("committing to the data file failed")

    def shutdown(self) -> None:
        """Stop: give every receiver's locks back and close every connection."""
        for connection in list(self.connections):
            self._drop_connection(connection)
            connection.close()

    @_guarded
    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS PLAIN")
        sasl.allow_insecure_mechs = True
        event.connection.emulator = ConnectionState()
        self.connections.append(event.connection)

    @_guarded
    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        connection.container = "devstack-servicebus"
        connection.open()

    @_guarded
    def on_session_remote_open(self, event: Any) -> None:
        event.session.open()

    @_guarded
    def on_session_remote_close(self, event: Any) -> None:
        event.session.close()

    @_guarded
    def on_connection_remote_close(self, event: Any) -> None:
        self._drop_connection(event.connection)
        event.connection.close()

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._drop_connection(event.connection)

    def _drop_connection(self, connection: Any) -> None:
        """Release everything a connection held: its receivers' locks go back to their queues at once."""
        if connection in self.connections:
            self.connections.remove(connection)
        state = connection_state(connection)
        for consumer in list(state.consumers):
            self._close_consumer(consumer)
        state.consumers.clear()
        state.pending_sessions.clear()
        state.reply_links.clear()

    def _close_consumer(self, consumer: ConsumerLink) -> None:
        if not consumer.closed:
            consumer.closed = True
            self.broker.detach(consumer.entity, consumer)

    # Links ---------------------------------------------------------------------------------------------

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if link.is_receiver:
            self._open_incoming(link)
        else:
            self._open_outgoing(link)

    def _open_incoming(self, link: Link) -> None:
        """The client sends on this link: put-token requests, management requests or messages."""
        address = link.remote_target.address or ""
        state = connection_state(link.connection)
        if address == CBS_ADDRESS:
            link.role = ("cbs", None)
        elif address.lower().endswith(MANAGEMENT_SUFFIX):
            entity_path = address[: -len(MANAGEMENT_SUFFIX)]
            try:
                context = self._management_context(entity_path)
                self._authorize(state, entity_path)
            except BrokerError as error:
                self._refuse(link, error)
                return
            link.role = ("management", context)
        else:
            try:
                target = self.broker.target(address)
                self._authorize(state, address)
            except BrokerError as error:
                self._refuse(link, error)
                return
            link.role = ("send", target)
            link.properties = {symbol("com.microsoft:max-message-batch-size"): ulong(256 * 1024)}
        link.open()
        link.flow(_SENDER_CREDIT)

    def _open_outgoing(self, link: Link) -> None:
        """The client receives on this link: replies, or messages from an entity."""
        address = link.remote_source.address or ""
        state = connection_state(link.connection)
        if address == CBS_ADDRESS or address.lower().endswith(MANAGEMENT_SUFFIX):
            link.role = ("reply", None)
            reply_to = link.remote_target.address
            if reply_to:
                state.reply_links[reply_to] = link
            # Clients that set no reply-to get replies on the link of the same session and address.
            state.reply_links[pair_key(link.session, address)] = link
            state.reply_links[address.lower()] = link
            link.open()
            return
        try:
            entity = self.broker.entity(address)
            self._authorize(state, address)
        except BrokerError as error:
            self._refuse(link, error)
            return
        consumer = ConsumerLink(link, entity, self.broker)
        link.role = ("receive", consumer)
        has_session_filter, session_id = requested_session(link)
        if not has_session_filter:
            try:
                self.broker.attach(entity, consumer)
            except BrokerError as error:
                self._refuse(link, error)
                return
            state.consumers.append(consumer)
            link.open()
            consumer.refresh_credit()
            self.broker.pump(entity)
            return
        self._open_session_receiver(consumer, session_id, state)

    def _open_session_receiver(
        self,
        consumer: ConsumerLink,
        session_id: str | None,
        state: ConnectionState,
        *,
        deadline: float | None = None,
    ) -> None:
        """Lock a session for a receiver, or keep it waiting (until `deadline`) for one with messages."""
        try:
            session = self.broker.attach_session(consumer.entity, consumer, session_id)
        except BrokerError as error:
            self._refuse(consumer.link, error)
            return
        if session is None:
            if deadline is None:
                deadline = time.monotonic() + _session_wait_seconds(consumer.link)
            state.pending_sessions.append(PendingSession(consumer, deadline))
            return
        link = consumer.link
        link.source.filter.clear()
        link.source.filter.put_dict({SESSION_FILTER: session.session_id})
        ticks = int(session.locked_until * 10_000_000) + _DOTNET_EPOCH_TICKS
        link.properties = {LOCKED_UNTIL_UTC: ticks}
        state.consumers.append(consumer)
        link.open()
        # Messages go out only once the link is open, so offer them now that it is.
        consumer.refresh_credit()
        self.broker.pump(consumer.entity)

    def _retry_pending_sessions(self) -> None:
        now = time.monotonic()
        for connection in self.connections:
            state = connection_state(connection)
            waiting, state.pending_sessions = state.pending_sessions, []
            for pending in waiting:
                if pending.consumer.link.state & Link.REMOTE_CLOSED:
                    continue
                if now >= pending.deadline:
                    self._refuse(
                        pending.consumer.link,
                        OperationTimeoutError("No session is available to accept within the wait time."),
                    )
                    continue
                # The deadline is the one set when the receiver first asked, not a fresh one per tick.
                self._open_session_receiver(pending.consumer, None, state, deadline=pending.deadline)

    def _refuse(self, link: Link, error: BrokerError) -> None:
        """Refuse an attach as Azure does: a null terminus, then a detach with the error condition."""
        # With a null terminus the SDK never counts the link as open; echoing it would let a receiver with no
        # session look ready for the moment between this attach and the detach.
        if error.condition in _NULL_TERMINUS_CONDITIONS:
            if link.is_receiver:
                link.target.type = Terminus.UNSPECIFIED
            else:
                link.source.type = Terminus.UNSPECIFIED
        link.role = ("refused", None)
        link.open()
        link.condition = error_condition(error.condition, error.description)
        link.close()

    def _authorize(self, state: ConnectionState, address: str) -> None:
        path = audience_path(address)
        if not grants(state.audiences, path):
            raise UnauthorizedError(
                f"Unauthorized access. A valid put-token for '{address}' is required first."
            )

    def _management_context(self, entity_path: str) -> ManagementContext:
        entity: MessageEntity | None = None
        target: SendTarget | None = None
        try:
            entity = self.broker.entity(entity_path)
        except EntityNotFoundError:
            entity = None
        try:
            target = self.broker.target(entity_path)
        except EntityNotFoundError:
            if entity is None:
                raise
        return ManagementContext(broker=self.broker, entity=entity, target=target)

    @_guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        role, value = link_role(link)
        if role == "receive":
            state = connection_state(link.connection)
            if value in state.consumers:
                state.consumers.remove(value)
            state.pending_sessions = [p for p in state.pending_sessions if p.consumer is not value]
            self._close_consumer(value)
        elif role == "reply":
            state = connection_state(link.connection)
            for key, reply_link in list(state.reply_links.items()):
                if reply_link == link:
                    del state.reply_links[key]
        if not link.state & Link.LOCAL_CLOSED:
            link.close()

    @_guarded
    def on_link_flow(self, event: Any) -> None:
        role, value = link_role(event.link)
        if role == "receive" and not value.closed:
            value.refresh_credit()
            self.broker.pump(value.entity)
            if event.link.drain_mode:
                # A draining receiver asks for its unused credit back once nothing more is ready.
                event.link.drained()
                value.refresh_credit()

    # Deliveries ----------------------------------------------------------------------------------------

    @_guarded
    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = event.link
        if link.is_receiver:
            self._incoming_delivery(link, delivery)
        elif delivery.updated:
            self._settlement(link, delivery)

    def _incoming_delivery(self, link: Link, delivery: Delivery) -> None:
        if delivery.aborted:
            # The sender gave up part-way through a multi-frame message: drop what arrived.
            delivery.buffered = b""
            link.advance()
            delivery.settle()
            return
        if not delivery.readable:
            return
        chunk = link.recv(delivery.pending)
        # Proton may hand back a view over its own buffer: copy it before the next read reuses it.
        buffered = getattr(delivery, "buffered", b"") + (bytes(chunk) if chunk else b"")
        if delivery.partial:
            delivery.buffered = buffered
            return
        link.advance()
        if link.credit < _SENDER_CREDIT // 2:
            link.flow(_SENDER_CREDIT - link.credit)
        role, value = link_role(link)
        try:
            if role == "send":
                self.broker.send(value, buffered)
                self._settle_incoming(delivery, None)
            elif role == "cbs":
                self._settle_incoming(delivery, None)
                self._cbs_request(link, buffered)
            elif role == "management":
                self._settle_incoming(delivery, None)
                self._management_request(link, value, buffered)
            else:
                raise BadRequestError("this link does not accept messages")
        except MalformedMessageError as error:
            self._settle_incoming(delivery, BadRequestError(f"malformed message: {error}"))
        except BrokerError as error:
            self._settle_incoming(delivery, error)

    @staticmethod
    def _settle_incoming(delivery: Delivery, error: BrokerError | None) -> None:
        if delivery.settled:
            return
        if error is None:
            delivery.update(Disposition.ACCEPTED)
        else:
            delivery.local.condition = error_condition(error.condition, error.description)
            delivery.update(Disposition.REJECTED)
        delivery.settle()

    def _settlement(self, link: Link, delivery: Delivery) -> None:
        """A receiver settled a message: apply the outcome and echo it, settled."""
        token = getattr(delivery, "lock_token", None)
        role, consumer = link_role(link)
        if token is None or role != "receive":
            if not delivery.settled:
                delivery.settle()
            return
        settlement = read_settlement(delivery)
        if settlement is None:
            return  # a non-terminal state (received): nothing to settle yet
        delivery.lock_token = None
        try:
            self.broker.settle(
                token,
                settlement.outcome,
                entity=consumer.entity,
                dead_letter_reason=settlement.reason,
                dead_letter_description=settlement.description,
                properties_to_modify=settlement.properties_to_modify,
            )
        except BrokerError as error:
            delivery.local.condition = error_condition(error.condition, error.description)
            delivery.update(Disposition.REJECTED)
        else:
            remote = delivery.remote
            if delivery.remote_state == Disposition.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
            # A rejection is echoed without an error: an error would tell the client it failed.
            delivery.update(delivery.remote_state)
        delivery.settle()

    # Request/response ----------------------------------------------------------------------------------

    def _cbs_request(self, link: Link, raw: bytes) -> None:
        request = parse_request(raw)
        if request.operation != "put-token":
            reply = (400, f"unsupported $cbs operation '{request.operation}'")
        elif request.properties.get("type") not in {SAS_TOKEN_TYPE, "jwt"} or not isinstance(
            request.body, str
        ):
            reply = (400, "put-token needs a SAS token string")
        else:
            try:
                granted = verify_token(request.body, rule=self.rule, now=time.time())
            except UnauthorizedError as error:
                reply = (401, error.description)
            else:
                connection_state(link.connection).audiences.add(granted)
                reply = (202, "Accepted")
        app = {"status-code": reply[0], "status-description": reply[1]}
        self._reply(link, request, app, None)

    def _management_request(self, link: Link, context: ManagementContext, raw: bytes) -> None:
        request = parse_request(raw)
        try:
            result = handle_request(context, request.operation, request.body)
        except BrokerError as error:
            app: dict[str, Any] = {
                "statusCode": error.status,
                "statusDescription": error.description,
                "errorCondition": symbol(error.condition),
            }
            self._reply(link, request, app, None)
            return
        self._reply(link, request, _status(result), result.body)

    def _reply(self, link: Link, request: Request, application: dict[str, Any], body: Any) -> None:
        links = connection_state(link.connection).reply_links
        address = link.remote_target.address or ""
        reply_link = (
            links.get(request.reply_to or "")
            or links.get(pair_key(link.session, address))
            or links.get(address.lower())
        )
        if reply_link is None:
            _log.warning("dropping a reply: no link is attached for reply-to %r", request.reply_to)
            return
        encoded = encode_reply(request, application, body)
        delivery = reply_link.delivery(cast("str", uuid.uuid4().bytes))  # proton takes bytes too
        reply_link.stream(encoded)
        reply_link.advance()
        delivery.settle()


def _session_wait_seconds(link: Link) -> float:
    """The wait a next-available-session receiver asked for (`com.microsoft:timeout`, ms), or the default."""
    properties = link.remote_properties
    requested = properties.get(OPERATION_TIMEOUT) if isinstance(properties, dict) else None
    if isinstance(requested, int) and requested > 0:
        return requested / 1000
    return _DEFAULT_SESSION_WAIT_SECONDS


def _status(result: ManagementReply) -> dict[str, Any]:
    return {"statusCode": result.status, "statusDescription": result.description}


def run_server(
    broker: Broker,
    *,
    host: str,
    port: int,
    rule: SharedAccessKey,
    on_ready: Callable[[str, int], None],
    should_stop: Callable[[], bool],
) -> None:
    """Serve until `should_stop()` turns true (checked at least every tick)."""
    handler = EmulatorHandler(broker, rule=rule)
    loop = ProtonLoop(handler, host=host, port=port, tick_seconds=_TICK_SECONDS)
    on_ready(host, port)
    loop.run(should_stop)
