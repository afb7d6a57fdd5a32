"""Unit tests: the broker's state machine with a fake clock (no server)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proton import Message, symbol, timestamp

from devstack.servicebus.broker import Broker
from devstack.servicebus.config import parse_topology
from devstack.servicebus.entities import MessageState, Outcome
from devstack.servicebus.errors import MessageLockLostError
from devstack.servicebus.messages import Stamps, parse_message, split_batch


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Receiver:
    def __init__(self, credit: int = 100, *, receive_and_delete: bool = False) -> None:
        self.remaining = credit
        self.receive_and_delete = receive_and_delete
        self.got = []

    @property
    def credit(self) -> int:
        return self.remaining

    def deliver(self, message, lock) -> None:
        self.remaining -= 1
        self.got.append((message, lock))

    def session_lost(self, session_id: str) -> None:
        self.lost = session_id


def _broker(**queue_properties):
    topology = parse_topology(
        {
            "UserConfig": {
                "Namespaces": [{"Name": "ns", "Queues": [{"Name": "q", "Properties": queue_properties}]}]
            }
        }
    )
    clock = Clock()
    return Broker(topology, clock=clock), clock


def _raw(body: str, **fields) -> bytes:
    message = Message(body=body, **fields)
    return bytes(message.encode())


def test_duplicate_window_forgets_old_ids():
    broker, clock = _broker(RequiresDuplicateDetection=True, DuplicateDetectionHistoryTimeWindow="PT1M")
    target, entity = broker.target("q"), broker.entity("q")
    broker.send(target, _raw("a", id="same"))
    broker.send(target, _raw("b", id="same"))
    assert len(entity.messages) == 1
    clock.now += 61
    broker.tick()
    broker.send(target, _raw("c", id="same"))
    assert len(entity.messages) == 2


def test_lock_expiry_redelivers_and_counts_the_attempt():
    broker, clock = _broker(LockDuration="PT10S", MaxDeliveryCount=2)
    entity = broker.entity("q")
    receiver = Receiver()
    broker.attach(entity, receiver)
    broker.send(broker.target("q"), _raw("work"))
    [(message, lock)] = receiver.got
    clock.now += 11
    broker.tick()
    assert message.delivery_count == 1
    assert len(receiver.got) == 2  # redelivered
    with pytest.raises(MessageLockLostError):
        broker.settle(lock.token, Outcome.COMPLETE)
    _, second_lock = receiver.got[1]
    clock.now += 11
    broker.tick()
    assert entity.messages == {}
    [dead] = entity.dead_letter.messages.values()
    assert dead.envelope.user_properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert second_lock.token not in broker.locks


def test_scheduled_message_waits_for_its_time():
    broker, clock = _broker()
    entity = broker.entity("q")
    raw = Message(body="later")
    raw.annotations = {symbol("x-opt-scheduled-enqueue-time"): timestamp(int((clock.now + 30) * 1000))}
    [number] = broker.schedule(broker.target("q"), [bytes(raw.encode())])
    assert entity.messages == {}
    clock.now += 29
    broker.tick()
    assert entity.messages == {}
    clock.now += 2
    broker.tick()
    assert list(entity.messages) == [number]


def test_receive_and_delete_removes_on_delivery():
    broker, _ = _broker()
    entity = broker.entity("q")
    receiver = Receiver(receive_and_delete=True)
    broker.attach(entity, receiver)
    broker.send(broker.target("q"), _raw("gone"))
    [(_, lock)] = receiver.got
    assert lock is None
    assert entity.messages == {}


def test_credit_bounds_deliveries():
    broker, _ = _broker()
    entity = broker.entity("q")
    receiver = Receiver(credit=2)
    broker.attach(entity, receiver)
    for index in range(5):
        broker.send(broker.target("q"), _raw(f"m{index}"))
    assert len(receiver.got) == 2
    receiver.remaining = 10
    broker.pump(entity)
    assert len(receiver.got) == 5


def test_batch_envelope_is_split_into_its_messages():
    inner = [_raw("one", id="1"), _raw("two", id="2")]
    data_sections = b"".join(b"\x00\x53\x75\xb0" + len(item).to_bytes(4, "big") + item for item in inner)
    batch = b"\x00\x53\x73\x45" + data_sections  # empty properties list, then one data section per message
    parts = split_batch(batch)
    assert [parse_message(b"".join(section for _, section in sections)).message_id for sections in parts] == [
        "1",
        "2",
    ]


def test_a_single_message_with_binary_body_is_not_taken_for_a_batch():
    raw = b"\x00\x53\x75\xa0\x05hello"
    [sections] = split_batch(raw)
    assert parse_message(raw).body == b"\x00\x53\x75\xa0\x05hello"
    assert len(sections) == 1


def test_delivery_keeps_sender_annotations_and_adds_broker_stamps():
    message = Message(body="x", properties={"k": 1})
    message.annotations = {symbol("x-opt-partition-key"): "p"}
    envelope = parse_message(bytes(message.encode()))
    received = Message()
    received.decode(envelope.encode(delivery_count=3, stamps=Stamps(sequence_number=7, enqueued_ms=1000)))
    assert received.annotations[symbol("x-opt-partition-key")] == "p"
    assert received.annotations[symbol("x-opt-sequence-number")] == 7
    assert received.delivery_count == 3
    assert received.properties == {"k": 1}


def test_dead_lettering_in_a_dead_letter_queue_keeps_the_message():
    broker, _ = _broker(MaxDeliveryCount=1)
    entity = broker.entity("q")
    receiver = Receiver()
    broker.attach(entity, receiver)
    broker.send(broker.target("q"), _raw("poison"))
    [(_, lock)] = receiver.got
    broker.settle(lock.token, Outcome.DEAD_LETTER, dead_letter_reason="First")
    dead_receiver = Receiver()
    broker.attach(entity.dead_letter, dead_receiver)
    [(_, dead_lock)] = dead_receiver.got
    broker.settle(dead_lock.token, Outcome.DEAD_LETTER, dead_letter_reason="Second")
    [kept] = entity.dead_letter.messages.values()
    assert kept.envelope.user_properties["DeadLetterReason"] == "Second"


_SETTLEMENTS = {
    "complete": Outcome.COMPLETE,
    "abandon": Outcome.ABANDON,
    "dead-letter": Outcome.DEAD_LETTER,
    "defer": Outcome.DEFER,
    "release": Outcome.RELEASE,
}
_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from([*_SETTLEMENTS, "send", "wait", "reconnect", "take-deferred"]),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=60,
)


class Scenario:
    """A receiver doing arbitrary things to one queue; `completed` is what it finished."""

    def __init__(self) -> None:
        self.broker, self.clock = _broker(LockDuration="PT10S", MaxDeliveryCount=3)
        self.entity = self.broker.entity("q")
        self.receiver = Receiver(credit=3)
        self.broker.attach(self.entity, self.receiver)
        self.completed: set[int] = set()

    def send(self, pick: int) -> None:
        self.broker.send(self.broker.target("q"), _raw(f"m{pick}"))

    def wait(self, pick: int) -> None:
        self.clock.now += pick / 50  # up to 20 s: some locks expire, some do not
        self.broker.tick()

    def reconnect(self, _pick: int) -> None:
        self.broker.detach(self.entity, self.receiver)
        self.receiver = Receiver(credit=3)
        self.broker.attach(self.entity, self.receiver)

    def take_deferred(self, pick: int) -> None:
        deferred = [
            m.sequence_number
            for m in self.entity.messages.values()
            if m.state is MessageState.DEFERRED and m.lock is None
        ]
        if deferred:
            number = deferred[pick % len(deferred)]
            taken = self.broker.receive_deferred(self.entity, [number], delete=False, session_id=None)
            self.receiver.got.extend(taken)

    def settle(self, outcome: Outcome, pick: int) -> None:
        held = [(message, lock) for message, lock in self.receiver.got if lock.token in self.broker.locks]
        if not held:
            return
        message, lock = held[pick % len(held)]
        try:
            self.broker.settle(lock.token, outcome)
        except MessageLockLostError:
            return
        if outcome is Outcome.COMPLETE:
            self.completed.add(message.sequence_number)
        self.receiver.remaining += 1  # the client grants credit again as it settles
        self.broker.pump(self.entity)

    def check(self) -> None:
        stored = set(self.entity.messages)
        dead = set(self.entity.dead_letter.messages)
        assert not stored & dead
        assert not self.completed & (stored | dead)
        assert self.completed | stored | dead == set(range(1, self.broker._sequence + 1))
        for message in self.entity.messages.values():
            assert not (message.in_ready and message.lock is not None)


@settings(max_examples=150, deadline=None)
@given(operations=_OPERATIONS)
def test_no_message_is_lost_or_duplicated_whatever_receivers_do(operations):
    scenario = Scenario()
    for operation, pick in operations:
        if operation in _SETTLEMENTS:
            scenario.settle(_SETTLEMENTS[operation], pick)
        else:
            getattr(scenario, operation.replace("-", "_"))(pick)
        scenario.check()
