"""The namespace's entities and message state machine, free of any network code.

Everything here runs on the server's single event-loop thread, so there is no locking. Time comes from an
injected clock; `tick()` is called periodically to move scheduled messages in, expire locks, sessions and
messages, and prune duplicate-detection history. Ready messages sit in heaps keyed by sequence number
(stale entries are skipped when popped), so a send, a delivery and a settlement cost O(log n).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from typing import TYPE_CHECKING

from devstack.servicebus.entities import (
    FOREVER_SECONDS,
    Consumer,
    DuplicateHistory,
    EntitySettings,
    Lock,
    MessageEntity,
    MessageSession,
    MessageState,
    Outcome,
    SendTarget,
    StoredMessage,
)
from devstack.servicebus.errors import (
    BadRequestError,
    EntityNotFoundError,
    MessageLockLostError,
    MessageNotFoundError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from devstack.servicebus.filters import MessageView, apply_action
from devstack.servicebus.messages import Envelope, parse_message, parse_sections, split_batch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from devstack.servicebus.config import Topology
    from devstack.servicebus.store import Store

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"
_MAX_FORWARD_HOPS = 4  # Azure stops auto-forwarding chains after four hops
_LOCK_INVALID = (
    "The lock supplied is invalid. Either the lock expired, or the message has already been removed "
    "from the queue."
)


class Broker:
    """All entities of the namespace and the operations the protocol layer calls."""

    def __init__(self, topology: Topology, *, clock: Callable[[], float], store: Store | None = None) -> None:
        self._clock = clock
        self._store = store
        self.namespace = topology.namespace
        self.targets: dict[str, SendTarget] = {}
        self.entities: dict[str, MessageEntity] = {}
        self.locks: dict[uuid.UUID, Lock] = {}
        self._lock_deadlines: list[tuple[float, int, uuid.UUID]] = []
        self._schedule: list[tuple[float, int, str]] = []
        self._expiries: list[tuple[float, int, str]] = []
        self._tie = itertools.count()
        self._sequence = 0
        self._build(topology)
        if store is not None:
            self._restore(store)

    # Topology ------------------------------------------------------------------------------------------

    def _add_entity(self, name: str, settings: EntitySettings) -> MessageEntity:
        entity = MessageEntity(name=name, settings=settings)
        dead_letter_settings = EntitySettings(
            lock_duration=settings.lock_duration, max_delivery_count=2**31 - 1
        )
        entity.dead_letter = MessageEntity(
            name=name + DEAD_LETTER_SUFFIX, settings=dead_letter_settings, is_dead_letter_queue=True
        )
        self.entities[name.lower()] = entity
        self.entities[entity.dead_letter.name.lower()] = entity.dead_letter
        return entity

    def _build(self, topology: Topology) -> None:
        for queue in topology.queues:
            props = queue.properties
            entity = self._add_entity(queue.name, EntitySettings.from_config(props))
            self.targets[queue.name.lower()] = SendTarget(
                name=queue.name,
                default_ttl=entity.settings.default_ttl,
                duplicates=_history(
                    props.requires_duplicate_detection, props.duplicate_detection_history_time_window
                ),
                queue=entity,
            )
        for topic in topology.topics:
            topic_props = topic.properties
            topic_ttl = topic_props.default_message_time_to_live.total_seconds()
            target = SendTarget(
                name=topic.name,
                default_ttl=topic_ttl,
                duplicates=_history(
                    topic_props.requires_duplicate_detection,
                    topic_props.duplicate_detection_history_time_window,
                ),
            )
            for subscription in topic.subscriptions:
                settings = EntitySettings.from_config(subscription.properties, topic_ttl=topic_ttl)
                entity = self._add_entity(f"{topic.name}/Subscriptions/{subscription.name}", settings)
                target.subscriptions.append((entity, subscription.rules))
            self.targets[topic.name.lower()] = target

    def _restore(self, store: Store) -> None:
        self._sequence = store.load_sequence()
        for record in store.load_messages():
            message = StoredMessage(
                sequence_number=record.sequence_number,
                envelope=parse_message(record.body),
                enqueued_at=record.enqueued_at,
                expires_at=record.expires_at,
                state=MessageState(record.state),
                delivery_count=record.delivery_count,
                scheduled_at=record.scheduled_at,
                dead_letter_source=record.dead_letter_source,
            )
            if message.state is MessageState.SCHEDULED:
                target = self.targets.get(record.entity.lower())
                if target is None:
                    continue
                target.scheduled[message.sequence_number] = message
                self._push_schedule(message, target.name)
                continue
            entity = self.entities.get(record.entity.lower())
            if entity is not None:
                self._insert(entity, message, persist=False)
        for entity_name, message_id, seen_at in store.load_duplicates():
            target = self.targets.get(entity_name.lower())
            if target is not None and target.duplicates is not None:
                target.duplicates.remember(message_id, seen_at)
        for entity_name, session_id, state, updated_at in store.load_session_states():
            entity = self.entities.get(entity_name.lower())
            if entity is not None:
                session = self._session(entity, session_id)
                session.state, session.state_updated_at = state, updated_at

    def entity(self, address: str) -> MessageEntity:
        """Find the entity a receiver or management request addresses."""
        entity = self.entities.get(_normalise(address))
        if entity is None:
            raise EntityNotFoundError(
                f"The messaging entity '{self.namespace}:{address}' could not be found."
            )
        return entity

    def target(self, address: str) -> SendTarget:
        """Find the queue or topic a sender addresses."""
        target = self.targets.get(_normalise(address))
        if target is None:
            raise EntityNotFoundError(
                f"The messaging entity '{self.namespace}:{address}' could not be found."
            )
        return target

    # Sending -------------------------------------------------------------------------------------------

    def send(self, target: SendTarget, raw: bytes) -> None:
        """Accept one transfer: a single message or a batch."""
        envelopes = [parse_sections(sections) for sections in split_batch(raw)]
        if target.queue is not None and target.queue.settings.requires_session:
            for envelope in envelopes:
                if envelope.session_id is None:
                    raise BadRequestError(
                        f"The SessionId was not set on a message, and it cannot be sent to the entity "
                        f"'{target.name}'. Entities that have session support enabled can only receive "
                        "messages that have a non-null SessionId."
                    )
        for envelope in envelopes:
            self.accept(target, envelope)

    def accept(self, target: SendTarget, envelope: Envelope, *, hops: int = 0) -> int | None:
        """Route one message into a target; returns its sequence number unless it was a duplicate."""
        now = self._clock()
        if target.duplicates is not None and envelope.message_id is not None:
            if target.duplicates.is_duplicate(envelope.message_id, now):
                return None
            target.duplicates.remember(envelope.message_id, now)
            if self._store is not None:
                self._store.put_duplicate(target.name, envelope.message_id, now)
        sequence_number = self._next_sequence()
        scheduled_ms = envelope.scheduled_enqueue_ms
        if scheduled_ms is not None and scheduled_ms / 1000 > now:
            message = StoredMessage(
                sequence_number=sequence_number,
                envelope=envelope,
                enqueued_at=now,
                expires_at=None,
                state=MessageState.SCHEDULED,
                scheduled_at=scheduled_ms / 1000,
            )
            target.scheduled[sequence_number] = message
            self._push_schedule(message, target.name)
            if self._store is not None:
                self._store.put_message(target.name, message)
            return sequence_number
        self._fan_out(target, envelope, sequence_number, now, hops=hops)
        return sequence_number

    def _fan_out(
        self, target: SendTarget, envelope: Envelope, sequence_number: int, now: float, *, hops: int
    ) -> None:
        if target.queue is not None:
            self._enqueue(target.queue, envelope, sequence_number, now, hops=hops)
            return
        view: MessageView | None = None
        for entity, rules in target.subscriptions:
            copy = envelope
            if rules:
                view = view or MessageView(system=envelope.system_view(), user=dict(envelope.user_properties))
                matched = [rule for rule in rules if rule.matches(view)]
                if not matched:
                    continue
                actions = [rule.action for rule in matched if rule.action]
                if actions:
                    changed = view
                    for action in actions:
                        changed = apply_action(action, changed)
                    copy = envelope.with_changes(system=changed.system, user=changed.user)
            if entity.settings.requires_session and copy.session_id is None:
                continue  # Azure drops what a session-enabled subscription cannot hold
            self._enqueue(entity, copy, sequence_number, now, hops=hops)

    def _enqueue(
        self, entity: MessageEntity, envelope: Envelope, sequence_number: int, now: float, *, hops: int
    ) -> None:
        forward = entity.settings.forward_to
        if forward and hops < _MAX_FORWARD_HOPS and forward in self.targets:
            self.accept(self.targets[forward], envelope, hops=hops + 1)
            return
        ttl = entity.settings.default_ttl
        if envelope.ttl_ms is not None and envelope.ttl_ms > 0:
            ttl = min(ttl, envelope.ttl_ms / 1000)
        message = StoredMessage(
            sequence_number=sequence_number,
            envelope=envelope,
            enqueued_at=now,
            expires_at=now + ttl if ttl < FOREVER_SECONDS else None,
        )
        self._insert(entity, message, persist=True)
        self.pump(entity)

    def _insert(self, entity: MessageEntity, message: StoredMessage, *, persist: bool) -> None:
        entity.messages[message.sequence_number] = message
        if message.expires_at is not None and not entity.is_dead_letter_queue:
            heapq.heappush(self._expiries, (message.expires_at, message.sequence_number, entity.name.lower()))
        if message.state is MessageState.ACTIVE:
            self._make_ready(entity, message)
        if persist and self._store is not None:
            self._store.put_message(entity.name, message)

    def _make_ready(self, entity: MessageEntity, message: StoredMessage) -> None:
        if message.in_ready:
            return
        message.in_ready = True
        session_id = message.envelope.session_id if entity.settings.requires_session else None
        if session_id is not None:
            heapq.heappush(self._session(entity, session_id).ready, message.sequence_number)
        else:
            heapq.heappush(entity.ready, message.sequence_number)

    def _session(self, entity: MessageEntity, session_id: str) -> MessageSession:
        session = entity.sessions.get(session_id)
        if session is None:
            session = entity.sessions[session_id] = MessageSession(session_id)
        return session

    def _next_sequence(self) -> int:
        self._sequence += 1
        if self._store is not None:
            self._store.put_sequence(self._sequence)
        return self._sequence

    # Scheduling ----------------------------------------------------------------------------------------

    def schedule(self, target: SendTarget, raws: Iterable[bytes]) -> list[int]:
        """Schedule messages (each carries its enqueue time); returns their sequence numbers."""
        numbers = []
        for raw in raws:
            envelope = parse_message(raw)
            if envelope.scheduled_enqueue_ms is None:
                raise BadRequestError("a scheduled message needs x-opt-scheduled-enqueue-time")
            number = self.accept(target, envelope)
            numbers.append(number if number is not None else 0)
        return numbers

    def cancel_scheduled(self, target: SendTarget, sequence_numbers: Iterable[int]) -> None:
        """Cancel scheduled messages; unknown numbers are ignored, as Azure does."""
        for number in sequence_numbers:
            if target.scheduled.pop(number, None) is not None and self._store is not None:
                self._store.delete_message(target.name, number)

    def _push_schedule(self, message: StoredMessage, target_name: str) -> None:
        when = message.scheduled_at or 0.0
        heapq.heappush(self._schedule, (when, message.sequence_number, target_name.lower()))

    # Receiving -----------------------------------------------------------------------------------------

    def attach(self, entity: MessageEntity, consumer: Consumer) -> None:
        """Register a receiver for an entity without sessions."""
        if entity.settings.requires_session:
            raise BadRequestError(
                f"It is not possible for an entity that requires sessions to create a non-sessionful "
                f"message receiver. Entity: '{entity.name}'"
            )
        entity.consumers.append(consumer)
        self.pump(entity)

    def attach_session(
        self, entity: MessageEntity, consumer: Consumer, session_id: str | None
    ) -> MessageSession | None:
        """Lock a session for a receiver: the given one, or the next one with messages (None if none yet)."""
        if not entity.settings.requires_session:
            raise BadRequestError(
                f"It is not possible for an entity that does not require sessions to create a session "
                f"receiver. Entity: '{entity.name}'"
            )
        now = self._clock()
        if session_id is None:
            session = next(
                (item for item in entity.sessions.values() if item.owner is None and item.ready), None
            )
            if session is None:
                return None
        else:
            session = self._session(entity, session_id)
            if session.owner is not None:
                raise SessionCannotBeLockedError(
                    f"The requested session '{session_id}' cannot be accepted. "
                    "It may be locked by another receiver."
                )
        session.owner = consumer
        session.locked_until = now + entity.settings.lock_duration
        entity.consumers.append(consumer)
        entity.consumer_sessions[id(consumer)] = session
        self.pump(entity)
        return session

    def detach(self, entity: MessageEntity, consumer: Consumer) -> None:
        """A receiver went away: release its locks (counted as a delivery attempt) and its session."""
        if consumer in entity.consumers:
            entity.consumers.remove(consumer)
        session = entity.consumer_sessions.pop(id(consumer), None)
        if session is not None and session.owner is consumer:
            session.owner = None
        for lock in [lock for lock in self.locks.values() if lock.owner is consumer]:
            self._release_lock(lock, count_attempt=True)
        self.pump(entity)

    def pump(self, entity: MessageEntity) -> None:
        """Hand ready messages to receivers with credit, round robin."""
        consumers = entity.consumers
        if not consumers:
            return
        if entity.settings.requires_session:
            for consumer in list(consumers):
                session = entity.consumer_sessions.get(id(consumer))
                if session is not None:
                    while consumer.credit > 0:
                        message = self._pop_ready(entity, session.ready)
                        if message is None:
                            break
                        self._deliver(entity, message, consumer, session)
            return
        idle = 0
        while entity.ready and idle < len(consumers):
            consumer = consumers[entity.next_consumer % len(consumers)]
            entity.next_consumer += 1
            if consumer.credit <= 0:
                idle += 1
                continue
            message = self._pop_ready(entity, entity.ready)
            if message is None:
                return
            idle = 0
            self._deliver(entity, message, consumer, None)

    def _pop_ready(self, entity: MessageEntity, heap: list[int]) -> StoredMessage | None:
        now = self._clock()
        while heap:
            number = heapq.heappop(heap)
            message = entity.messages.get(number)
            if message is None or not message.in_ready:
                continue
            message.in_ready = False
            if message.state is not MessageState.ACTIVE or message.lock is not None:
                continue
            if (
                message.expires_at is not None
                and message.expires_at <= now
                and not entity.is_dead_letter_queue
            ):
                self._expire(entity, message)
                continue
            return message
        return None

    def _deliver(
        self,
        entity: MessageEntity,
        message: StoredMessage,
        consumer: Consumer,
        session: MessageSession | None,
    ) -> None:
        if consumer.receive_and_delete:
            self._remove(entity, message)
            consumer.deliver(message, None)
            return
        locked_until = (
            session.locked_until if session is not None else self._clock() + entity.settings.lock_duration
        )
        lock = self._lock(entity, message, locked_until, consumer)
        lock.session_id = session.session_id if session is not None else None
        consumer.deliver(message, lock)

    def _lock(
        self, entity: MessageEntity, message: StoredMessage, until: float, owner: Consumer | None
    ) -> Lock:
        lock = Lock(uuid.uuid4(), message, entity, until, owner)
        message.lock = lock
        self.locks[lock.token] = lock
        heapq.heappush(self._lock_deadlines, (until, next(self._tie), lock.token))
        return lock

    def _remove(self, entity: MessageEntity, message: StoredMessage) -> None:
        entity.messages.pop(message.sequence_number, None)
        message.in_ready = False
        if message.lock is not None:
            self.locks.pop(message.lock.token, None)
            message.lock = None
        if self._store is not None:
            self._store.delete_message(entity.name, message.sequence_number)

    # Settlement ----------------------------------------------------------------------------------------

    def settle(
        self,
        token: uuid.UUID,
        outcome: Outcome,
        *,
        entity: MessageEntity | None = None,
        dead_letter_reason: str | None = None,
        dead_letter_description: str | None = None,
        properties_to_modify: dict[str, object] | None = None,
    ) -> None:
        """Apply a receiver's outcome to a locked message; raises `MessageLockLostError` if it is gone."""
        lock = self.locks.get(token)
        if lock is None or (entity is not None and lock.entity is not entity):
            raise MessageLockLostError(_LOCK_INVALID)
        if lock.locked_until <= self._clock() and lock.session_id is None:
            self._release_lock(lock, count_attempt=True)
            raise MessageLockLostError("The lock supplied has expired.")
        message, owner_entity = lock.message, lock.entity
        if properties_to_modify:
            user = {**message.envelope.user_properties, **properties_to_modify}
            message.envelope = message.envelope.with_changes(user=user)
        if outcome is Outcome.COMPLETE:
            self._remove(owner_entity, message)
        elif outcome is Outcome.DEAD_LETTER:
            self._remove(owner_entity, message)
            self._dead_letter(owner_entity, message, dead_letter_reason, dead_letter_description)
        elif outcome is Outcome.DEFER:
            self._drop_lock(lock)
            message.state = MessageState.DEFERRED
            self._persist(owner_entity, message)
        else:
            self._release_lock(lock, count_attempt=outcome is Outcome.ABANDON)
        self.pump(owner_entity)

    def _drop_lock(self, lock: Lock) -> None:
        self.locks.pop(lock.token, None)
        if lock.message.lock is lock:
            lock.message.lock = None

    def _release_lock(self, lock: Lock, *, count_attempt: bool) -> None:
        """Return a locked message to its entity (abandon, lock expiry, receiver gone)."""
        self._drop_lock(lock)
        message, entity = lock.message, lock.entity
        if entity.messages.get(message.sequence_number) is not message:
            return
        if count_attempt:
            message.delivery_count += 1
            if (
                message.delivery_count >= entity.settings.max_delivery_count
                and not entity.is_dead_letter_queue
            ):
                self._remove(entity, message)
                self._dead_letter(
                    entity,
                    message,
                    MAX_DELIVERY_COUNT_EXCEEDED,
                    f"Message could not be consumed after {entity.settings.max_delivery_count} "
                    "delivery attempts.",
                )
                return
        if message.state is MessageState.ACTIVE:
            self._make_ready(entity, message)
        self._persist(entity, message)
        self.pump(entity)

    def _dead_letter(
        self, entity: MessageEntity, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        user = dict(message.envelope.user_properties)
        if reason is not None:
            user["DeadLetterReason"] = reason
        if description is not None:
            user["DeadLetterErrorDescription"] = description
        envelope = message.envelope.with_changes(user=user)
        forward = entity.settings.forward_dead_letters_to
        if forward and forward in self.targets:
            self.accept(self.targets[forward], envelope, hops=1)
            return
        # A dead-letter queue has no dead-letter queue of its own: dead-lettering there keeps the message
        # where it is, with the new reason, rather than losing it.
        destination = entity.dead_letter if entity.dead_letter is not None else entity
        dead = StoredMessage(
            sequence_number=message.sequence_number,
            envelope=envelope,
            enqueued_at=message.enqueued_at,
            expires_at=None,
            delivery_count=message.delivery_count,
            dead_letter_source=None,
        )
        self._insert(destination, dead, persist=True)
        self.pump(destination)

    def _expire(self, entity: MessageEntity, message: StoredMessage) -> None:
        self._remove(entity, message)
        if entity.settings.dead_letter_on_expiry:
            self._dead_letter(entity, message, TTL_EXPIRED, "The message expired and was dead lettered.")

    def _persist(self, entity: MessageEntity, message: StoredMessage) -> None:
        if self._store is not None:
            self._store.put_message(entity.name, message)

    def renew_lock(self, entity: MessageEntity, token: uuid.UUID) -> float:
        """Extend a message lock by the entity's lock duration; returns the new expiry (epoch seconds)."""
        lock = self.locks.get(token)
        now = self._clock()
        if lock is None or lock.entity is not entity or lock.locked_until <= now:
            raise MessageLockLostError(_LOCK_INVALID)
        lock.locked_until = now + entity.settings.lock_duration
        heapq.heappush(self._lock_deadlines, (lock.locked_until, next(self._tie), token))
        return lock.locked_until

    # Management reads ----------------------------------------------------------------------------------

    def peek(self, entity: MessageEntity, from_sequence: int, count: int) -> list[StoredMessage]:
        """Messages from `from_sequence` on, in sequence order, without locking them."""
        candidates = [m for m in entity.messages.values() if m.sequence_number >= from_sequence]
        for target in self.targets.values():
            if target.queue is entity:
                candidates += [m for m in target.scheduled.values() if m.sequence_number >= from_sequence]
        return sorted(candidates, key=lambda m: m.sequence_number)[: max(count, 0)]

    def receive_deferred(
        self, entity: MessageEntity, numbers: Iterable[int], *, delete: bool, session_id: str | None
    ) -> list[tuple[StoredMessage, Lock | None]]:
        """Take deferred messages by sequence number (locked, or removed when `delete`)."""
        found = []
        for number in numbers:
            message = entity.messages.get(number)
            if message is None or message.state is not MessageState.DEFERRED or message.lock is not None:
                raise MessageNotFoundError(
                    f"Failed to lock one or more specified messages. Message {number} "
                    "was not found or is not deferred."
                )
            if session_id is not None and message.envelope.session_id != session_id:
                raise MessageNotFoundError(f"Message {number} does not belong to session '{session_id}'.")
            found.append(message)
        results: list[tuple[StoredMessage, Lock | None]] = []
        for message in found:
            if delete:
                self._remove(entity, message)
                results.append((message, None))
            else:
                lock = self._lock(entity, message, self._clock() + entity.settings.lock_duration, None)
                results.append((message, lock))
        return results

    # Sessions ------------------------------------------------------------------------------------------

    def owned_session(self, entity: MessageEntity, session_id: str) -> MessageSession:
        """The session, if its lock is held; raises `SessionLockLostError` otherwise."""
        session = entity.sessions.get(session_id)
        if session is None or session.owner is None or session.locked_until <= self._clock():
            raise SessionLockLostError(
                f"The session lock has expired on the MessageSession. Accept a new MessageSession. "
                f"Session: '{session_id}'"
            )
        return session

    def renew_session_lock(self, entity: MessageEntity, session_id: str) -> float:
        session = self.owned_session(entity, session_id)
        session.locked_until = self._clock() + entity.settings.lock_duration
        return session.locked_until

    def session_state(self, entity: MessageEntity, session_id: str) -> bytes | None:
        return self.owned_session(entity, session_id).state

    def set_session_state(self, entity: MessageEntity, session_id: str, state: bytes | None) -> None:
        session = self.owned_session(entity, session_id)
        session.state, session.state_updated_at = state, self._clock()
        if self._store is not None:
            self._store.put_session_state(entity.name, session_id, state, updated_at=session.state_updated_at)

    def session_ids(self, entity: MessageEntity, *, state_updated_after: float | None = None) -> list[str]:
        """Sessions holding state or active messages; with a cutoff, those whose state changed after it."""
        if state_updated_after is not None:
            return [
                session_id
                for session_id, session in entity.sessions.items()
                if session.state is not None
                and session.state_updated_at is not None
                and session.state_updated_at > state_updated_after
            ]
        # Locked messages are active too, so look at the messages, not only at the ready heaps.
        with_messages = {
            message.envelope.session_id: None
            for message in entity.messages.values()
            if message.state is MessageState.ACTIVE and message.envelope.session_id is not None
        }
        with_state = {
            session_id: None for session_id, session in entity.sessions.items() if session.state is not None
        }
        return list({**with_state, **with_messages})

    def flush(self) -> None:
        """Commit what changed since the last flush; call before acknowledging anything to a client."""
        if self._store is not None:
            self._store.commit()

    # Time ----------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Apply everything that is due: scheduled messages, lock, session and message expiry."""
        now = self._clock()
        self._enqueue_due_scheduled(now)
        self._expire_locks(now)
        self._expire_sessions(now)
        self._expire_messages(now)
        self._prune_duplicates(now)

    def _enqueue_due_scheduled(self, now: float) -> None:
        while self._schedule and self._schedule[0][0] <= now:
            _, number, target_name = heapq.heappop(self._schedule)
            target = self.targets.get(target_name)
            message = target.scheduled.pop(number, None) if target is not None else None
            if target is None or message is None:
                continue  # cancelled
            if self._store is not None:
                self._store.delete_message(target.name, number)
            self._fan_out(target, message.envelope, number, now, hops=0)

    def _expire_locks(self, now: float) -> None:
        while self._lock_deadlines and self._lock_deadlines[0][0] <= now:
            _, _, token = heapq.heappop(self._lock_deadlines)
            lock = self.locks.get(token)
            # A renewed lock has a later entry of its own; session locks expire with their session.
            if lock is not None and lock.session_id is None and lock.locked_until <= now:
                self._release_lock(lock, count_attempt=True)

    def _expire_sessions(self, now: float) -> None:
        for entity in self.entities.values():
            if not entity.settings.requires_session:
                continue
            idle = []
            for session in entity.sessions.values():
                if session.owner is not None and session.locked_until <= now:
                    self._lose_session(entity, session)
                if session.owner is None and session.state is None and not session.ready:
                    idle.append(session.session_id)
            for session_id in idle:
                # Forget sessions that hold nothing, so this scan stays proportional to live sessions.
                del entity.sessions[session_id]

    def _expire_messages(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, number, entity_name = heapq.heappop(self._expiries)
            entity = self.entities[entity_name]
            message = entity.messages.get(number)
            # A locked message expires when its lock is released (see `_pop_ready`).
            if message is not None and message.lock is None and message.state is not MessageState.SCHEDULED:
                self._expire(entity, message)

    def _prune_duplicates(self, now: float) -> None:
        for target in self.targets.values():
            if target.duplicates is None:
                continue
            for message_id in target.duplicates.prune(now):
                if self._store is not None:
                    self._store.delete_duplicate(target.name, message_id)

    def _lose_session(self, entity: MessageEntity, session: MessageSession) -> None:
        owner = session.owner
        session.owner = None
        if owner is None:
            return
        entity.consumer_sessions.pop(id(owner), None)
        if owner in entity.consumers:
            entity.consumers.remove(owner)
        for lock in [lock for lock in self.locks.values() if lock.owner is owner]:
            self._release_lock(lock, count_attempt=True)
        owner.session_lost(session.session_id)


def _history(enabled: bool, window: object) -> DuplicateHistory | None:  # noqa: FBT001
    if not enabled:
        return None
    seconds = window.total_seconds() if hasattr(window, "total_seconds") else float(str(window))
    return DuplicateHistory(window=seconds)


def _normalise(address: str) -> str:
    """Reduce an AMQP address (`amqp://host/q`, `sb://host/q`, `q`) to the lower-case entity path."""
    path = address
    if "://" in path:
        path = path.split("://", 1)[1]
        path = path.split("/", 1)[1] if "/" in path else ""
    return path.strip("/").lower()
