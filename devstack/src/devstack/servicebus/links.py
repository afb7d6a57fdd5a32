"""Per-connection and per-link state of the AMQP front end, and reading what a receiver's disposition asks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from proton import Condition, Delivery, Disposition, Link, symbol

from devstack.servicebus.entities import Lock, MessageEntity, Outcome, StoredMessage

if TYPE_CHECKING:
    from devstack.servicebus.broker import Broker

SESSION_FILTER = symbol("com.microsoft:session-filter")


@dataclass(eq=False)
class ConnectionState:
    """What one client connection holds: accepted token audiences, reply links, receivers."""

    audiences: set[str] = field(default_factory=set)
    reply_links: dict[str, Link] = field(default_factory=dict)
    consumers: list[ConsumerLink] = field(default_factory=list)
    pending_sessions: list[PendingSession] = field(default_factory=list)


class ConsumerLink:
    """A receiver's link, as the broker's `Consumer`."""

    def __init__(self, link: Link, entity: MessageEntity, broker: Broker) -> None:
        self.link = link
        self.entity = entity
        self.broker = broker
        self.receive_and_delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        self.closed = False
        # Kept here rather than asked of proton each time: the broker checks every receiver's credit on
        # every pump. Proton's count changes only on a flow from the client (see `refresh_credit`) and by
        # the deliveries sent here.
        self._credit = 0

    @property
    def credit(self) -> int:
        return 0 if self.closed else self._credit

    def refresh_credit(self) -> None:
        """Take the link's credit from proton (after a flow frame, a drain or opening the link)."""
        self._credit = int(self.link.credit)

    def deliver(self, message: StoredMessage, lock: Lock | None) -> None:
        tag = lock.token.bytes_le if lock is not None else uuid.uuid4().bytes_le
        delivery = self.link.delivery(cast("str", tag))  # proton takes bytes too
        delivery.lock_token = lock.token if lock is not None else None
        self.link.stream(message.encode(locked_until=lock.locked_until if lock is not None else None))
        self.link.advance()
        self._credit -= 1
        if lock is None:
            delivery.settle()

    def session_lost(self, session_id: str) -> None:
        self.closed = True
        self.link.condition = error_condition(
            "com.microsoft:session-lock-lost", f"The session lock for session '{session_id}' has expired."
        )
        self.link.close()


@dataclass(eq=False)
class PendingSession:
    """A next-available-session receiver waiting for a session with messages."""

    consumer: ConsumerLink
    deadline: float


def error_condition(name: str, description: str) -> Condition:
    # Clients index the error's info field unconditionally, so always send one (Azure sends a tracking id).
    return Condition(name, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def pair_key(session: Any, address: str) -> str:
    return f"{hash(session)}|{address.lower()}"


def link_role(link: Link) -> tuple[str, Any]:
    """What a link is for (`send`, `receive`, `cbs`, `management`, `reply`) and the object serving it."""
    return cast("tuple[str, Any]", getattr(link, "role", ("", None)))


def connection_state(connection: Any) -> ConnectionState:
    state = getattr(connection, "emulator", None)
    if state is None:
        state = ConnectionState()
        connection.emulator = state
    return cast("ConnectionState", state)


def requested_session(link: Link) -> tuple[bool, str | None]:
    data = link.remote_source.filter
    data.rewind()
    if not data.next():
        return False, None
    filters = data.get_object()
    if not isinstance(filters, dict):
        return False, None
    for key, value in filters.items():
        if str(key) == str(SESSION_FILTER):
            inner = getattr(value, "value", value)
            if isinstance(inner, memoryview | bytes):
                inner = bytes(inner).decode()
            return True, None if inner is None else str(inner)
    return False, None


@dataclass(frozen=True)
class Settlement:
    """What a receiver's disposition asks for."""

    outcome: Outcome
    reason: str | None = None
    description: str | None = None
    properties_to_modify: dict[str, Any] | None = None


def read_settlement(delivery: Delivery) -> Settlement | None:
    """Map a disposition to an outcome: complete, dead-letter, defer, abandon or release."""
    remote = delivery.remote
    state = delivery.remote_state
    if state == Disposition.ACCEPTED:
        return Settlement(Outcome.COMPLETE)
    if state == Disposition.REJECTED:
        condition = remote.condition
        if condition is None:
            return Settlement(Outcome.DEAD_LETTER)
        raw_info = condition.info
        info = {str(key): value for key, value in raw_info.items()} if isinstance(raw_info, dict) else {}
        return Settlement(
            Outcome.DEAD_LETTER,
            reason=_text(info.get("DeadLetterReason")),
            description=_text(info.get("DeadLetterErrorDescription")) or _text(condition.description),
        )
    if state == Disposition.MODIFIED:
        if remote.undeliverable:
            outcome = Outcome.DEFER
        elif remote.failed:
            outcome = Outcome.ABANDON
        else:
            outcome = Outcome.RELEASE
        annotations = remote.annotations
        modify = {str(key): value for key, value in annotations.items()} if annotations else None
        return Settlement(outcome, properties_to_modify=modify)
    if state == Disposition.RELEASED:
        return Settlement(Outcome.RELEASE)
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, memoryview | bytes):
        return bytes(value).decode(errors="replace")
    return str(value)
