"""The `$management` request/response operations of an entity (lock renewal, peek, deferral, scheduling)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from proton import UNDESCRIBED, Array, Data, timestamp

from devstack.servicebus.entities import MessageEntity, Outcome, SendTarget
from devstack.servicebus.errors import BadRequestError, NotImplementedOperationError

if TYPE_CHECKING:
    from devstack.servicebus.broker import Broker

_VENDOR = "com.microsoft:"
# .NET's DateTime.MaxValue in epoch milliseconds: clients send it to ask for the default session listing.
_DATETIME_MAX_MS = 253402300800000
_DISPOSITIONS = {
    "completed": Outcome.COMPLETE,
    "abandoned": Outcome.ABANDON,
    "suspended": Outcome.DEAD_LETTER,
    "defered": Outcome.DEFER,  # sic: the wire value is misspelt
    "deferred": Outcome.DEFER,
}


@dataclass
class ManagementReply:
    """A successful reply: status and a map body."""

    status: int = 200
    description: str = "OK"
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ManagementContext:
    """What a request applies to: the entity and, for queues and topics, the send target."""

    broker: Broker
    entity: MessageEntity | None
    target: SendTarget | None

    def require_entity(self) -> MessageEntity:
        if self.entity is None:
            raise BadRequestError("this operation needs a queue or subscription")
        return self.entity

    def require_target(self) -> SendTarget:
        if self.target is None:
            raise BadRequestError("this operation needs a queue or topic")
        return self.target


def handle_request(context: ManagementContext, operation: str, body: Any) -> ManagementReply:
    """Run one management operation; `BrokerError`s raised here become error replies."""
    handler = _OPERATIONS.get(operation.removeprefix(_VENDOR)) if operation.startswith(_VENDOR) else None
    if handler is None:
        raise NotImplementedOperationError(f"The management operation '{operation}' is not supported.")
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise BadRequestError("the request body must be a map")
    return handler(context, body)


def _field(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise BadRequestError(f"the request is missing '{name}'")
    return body[name]


def _uuid_list(value: Any) -> list[uuid.UUID]:
    try:
        return [item if isinstance(item, uuid.UUID) else uuid.UUID(bytes=bytes(item)) for item in value]
    except (TypeError, ValueError):
        raise BadRequestError("lock-tokens must be an array of UUIDs") from None


def _int_list(value: Any) -> list[int]:
    try:
        return [int(item) for item in value]
    except (TypeError, ValueError):
        raise BadRequestError("sequence-numbers must be an array of longs") from None


def _array(element_type: int, *values: Any) -> Array:
    """An AMQP array (the SDK expects arrays, not lists, for tokens, numbers and expiries)."""
    return Array(cast("Any", UNDESCRIBED), element_type, *values)


def _timestamps(values: list[float]) -> Array:
    return _array(Data.TIMESTAMP, *[timestamp(int(value * 1000)) for value in values])


def _renew_lock(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    entity = context.require_entity()
    tokens = _uuid_list(_field(body, "lock-tokens"))
    expirations = [context.broker.renew_lock(entity, token) for token in tokens]
    return ManagementReply(body={"expirations": _timestamps(expirations)})


def _peek(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    entity = context.require_entity()
    start = int(_field(body, "from-sequence-number"))
    count = int(body.get("message-count", 1))
    session_id = body.get("session-id")
    messages = context.broker.peek(entity, start, count if session_id is None else 2**31)
    if session_id is not None:
        messages = [m for m in messages if m.envelope.session_id == session_id][:count]
    if not messages:
        return ManagementReply(status=204, description="No messages to peek.")
    return ManagementReply(body={"messages": [{"message": m.encode()} for m in messages]})


def _update_disposition(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    entity = context.require_entity()
    status = str(_field(body, "disposition-status"))
    outcome = _DISPOSITIONS.get(status)
    if outcome is None:
        raise BadRequestError(f"unknown disposition-status '{status}'")
    modify = body.get("properties-to-modify")
    session_id = body.get("session-id")
    if session_id is not None:
        context.broker.owned_session(entity, str(session_id))  # a lost session lock takes its messages' locks
    for token in _uuid_list(_field(body, "lock-tokens")):
        context.broker.settle(
            token,
            outcome,
            entity=entity,
            dead_letter_reason=body.get("deadletter-reason"),
            dead_letter_description=body.get("deadletter-description"),
            properties_to_modify=dict(modify) if isinstance(modify, Mapping) else None,
        )
    return ManagementReply()


def _receive_by_sequence_number(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    entity = context.require_entity()
    numbers = _int_list(_field(body, "sequence-numbers"))
    # receiver-settle-mode 0 ("first") is RECEIVE_AND_DELETE, 1 ("second") is PEEK_LOCK.
    delete = int(body.get("receiver-settle-mode", 1)) == 0
    taken = context.broker.receive_deferred(entity, numbers, delete=delete, session_id=body.get("session-id"))
    messages = []
    for message, lock in taken:
        item: dict[str, Any] = {"message": message.encode(locked_until=lock.locked_until if lock else None)}
        if lock is not None:
            item["lock-token"] = lock.token
        messages.append(item)
    return ManagementReply(body={"messages": messages})


def _schedule(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    target = context.require_target()
    items = _field(body, "messages")
    try:
        raws = [bytes(item["message"]) for item in items]
    except (TypeError, KeyError):
        raise BadRequestError("messages must be a list of maps with a binary 'message'") from None
    numbers = context.broker.schedule(target, raws)
    return ManagementReply(body={"sequence-numbers": _array(Data.LONG, *numbers)})


def _cancel_scheduled(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    context.broker.cancel_scheduled(context.require_target(), _int_list(_field(body, "sequence-numbers")))
    return ManagementReply()


def _renew_session_lock(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    until = context.broker.renew_session_lock(context.require_entity(), str(_field(body, "session-id")))
    return ManagementReply(body={"expiration": timestamp(int(until * 1000))})


def _get_session_state(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    state = context.broker.session_state(context.require_entity(), str(_field(body, "session-id")))
    return ManagementReply(body={"session-state": state})


def _set_session_state(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    state = body.get("session-state")
    if state is not None and not isinstance(state, bytes):
        raise BadRequestError("session-state must be binary")
    context.broker.set_session_state(context.require_entity(), str(_field(body, "session-id")), state)
    return ManagementReply()


def _get_message_sessions(context: ManagementContext, body: Mapping[str, Any]) -> ManagementReply:
    skip = int(body.get("skip", 0))
    top = int(body.get("top", 100))
    updated_after = _listing_cutoff(body.get("last-updated-time"))
    ids = context.broker.session_ids(context.require_entity(), state_updated_after=updated_after)
    ids = ids[skip : skip + top]
    if not ids:
        return ManagementReply(status=204, description="No sessions.")
    return ManagementReply(body={"skip": skip + len(ids), "sessions-ids": _array(Data.STRING, *ids)})


def _listing_cutoff(value: Any) -> float | None:
    """`last-updated-time` as epoch seconds, or None for the default listing (.NET's DateTime.MaxValue)."""
    if value is None:
        return None
    try:
        milliseconds = int(value)
    except (TypeError, ValueError):
        raise BadRequestError("last-updated-time must be a timestamp") from None
    return None if milliseconds >= _DATETIME_MAX_MS else milliseconds / 1000


_OPERATIONS: dict[str, Callable[[ManagementContext, Mapping[str, Any]], ManagementReply]] = {
    "renew-lock": _renew_lock,
    "peek-message": _peek,
    "update-disposition": _update_disposition,
    "receive-by-sequence-number": _receive_by_sequence_number,
    "schedule-message": _schedule,
    "cancel-scheduled-message": _cancel_scheduled,
    "renew-session-lock": _renew_session_lock,
    "get-session-state": _get_session_state,
    "set-session-state": _set_session_state,
    "get-message-sessions": _get_message_sessions,
}
