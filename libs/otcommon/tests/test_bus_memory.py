import asyncio

import pytest
from bus_contract import WAIT_SECONDS, BusContract, TopicBusContract

from otcommon.bus import (
    RETRY_SUBSCRIPTION_PROPERTY,
    CorrelationFilter,
    DeadLetteredMessage,
    InMemoryBus,
    SettlementError,
    Subscription,
    Topic,
    TrueFilter,
    address_retry,
)
from otcommon.bus.outcomes import retry_copy
from otcommon.messages import RawMessage

QUEUE = "contract"
TOPIC = "contract-topic"


class InMemoryHarness:
    def __init__(self) -> None:
        self.bus = InMemoryBus(lock_duration_seconds=30.0, max_delivery_count=10)

    def publisher(self):
        return self.bus.publisher(queue=QUEUE)

    def source(self):
        return self.bus.source(queue=QUEUE)

    async def send_raw(self, message: RawMessage) -> None:
        self.bus.send_raw(queue=QUEUE, message=message)

    async def dead_letters(self, *, count: int) -> list[DeadLetteredMessage]:
        async with asyncio.timeout(WAIT_SECONDS):
            return await self.bus.wait_for_dead_letters(queue=QUEUE, count=count)

    async def remaining(self) -> int:
        return len(self.bus.active_messages(queue=QUEUE))


class InMemoryTopicHarness:
    def __init__(self) -> None:
        subscriptions = (
            Subscription(name="primary"),
            Subscription(name="sibling"),
            Subscription(name="changes", rules=(CorrelationFilter(subject="TransactionChanged"),)),
        )
        topic = Topic(name=TOPIC, subscriptions=subscriptions)
        self.bus = InMemoryBus(lock_duration_seconds=30.0, max_delivery_count=10, topics=[topic])

    def publisher(self):
        return self.bus.topic_publisher(topic=TOPIC)

    def source(self):
        return self.bus.subscription_source(topic=TOPIC, subscription="primary")

    async def send_raw(self, message: RawMessage) -> None:
        self.bus.send_raw_to_topic(topic=TOPIC, message=message)

    async def dead_letters(self, *, count: int) -> list[DeadLetteredMessage]:
        async with asyncio.timeout(WAIT_SECONDS):
            return await self.bus.wait_for_dead_letters(topic=TOPIC, subscription="primary", count=count)

    async def remaining(self) -> int:
        return len(self.bus.active_messages(topic=TOPIC, subscription="primary"))

    async def waiting_on(self, subscription: str) -> list[RawMessage]:
        return self.bus.active_messages(topic=TOPIC, subscription=subscription)


class TestInMemoryBus(BusContract):
    @pytest.fixture
    def harness(self):
        return InMemoryHarness()


class TestInMemoryTopic(TopicBusContract):
    @pytest.fixture
    def harness(self):
        return InMemoryTopicHarness()


# Behaviour of the fake beyond the contract, which service unit tests rely on.


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def raw(message_id: str, *, subject: str = "T", correlation_id: str | None = None, **properties):
    return RawMessage(
        body=b"{}",
        subject=subject,
        message_id=message_id,
        correlation_id=correlation_id,
        properties=properties,
    )


async def test_an_expired_lock_makes_the_message_available_again():
    clock = ManualClock()
    bus = InMemoryBus(lock_duration_seconds=30.0, clock=clock)
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    source = bus.source(queue=QUEUE)

    [first] = await source.receive(max_messages=1, max_wait_seconds=0)
    clock.now += 29.9
    assert await source.receive(max_messages=1, max_wait_seconds=0) == []
    clock.now += 0.1
    [again] = await source.receive(max_messages=1, max_wait_seconds=0)

    assert again.raw.message_id == "m1"
    assert (first.delivery_count, again.delivery_count) == (1, 2)
    with pytest.raises(SettlementError):
        await first.complete()
    await again.complete()
    assert bus.active_messages(queue=QUEUE) == []


async def test_a_locked_message_is_not_handed_out_twice():
    bus = InMemoryBus(clock=ManualClock())
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    source = bus.source(queue=QUEUE)

    assert len(await source.receive(max_messages=5, max_wait_seconds=0)) == 1
    assert await source.receive(max_messages=5, max_wait_seconds=0) == []


async def test_a_scheduled_message_stays_hidden_until_its_time():
    clock = ManualClock()
    bus = InMemoryBus(clock=clock)
    bus.send_raw(queue=QUEUE, message=raw("later"), delay_seconds=10.0)
    source = bus.source(queue=QUEUE)

    assert await source.receive(max_messages=1, max_wait_seconds=0) == []
    clock.now += 9.9
    assert await source.receive(max_messages=1, max_wait_seconds=0) == []
    clock.now += 0.1
    [message] = await source.receive(max_messages=1, max_wait_seconds=0)
    assert message.raw.message_id == "later"


async def test_a_receive_waits_real_time_however_the_clock_stands():
    # The clock never moves here; a wait measured by it alone would never end.
    bus = InMemoryBus(clock=ManualClock())
    source = bus.source(queue=QUEUE)

    assert await source.receive(max_messages=1, max_wait_seconds=0.01) == []


async def test_settling_twice_fails():
    bus = InMemoryBus(clock=ManualClock())
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    [message] = await bus.source(queue=QUEUE).receive(max_messages=1, max_wait_seconds=0)

    await message.complete()
    with pytest.raises(SettlementError):
        await message.abandon()


async def test_duplicates_are_accepted_again_after_the_detection_window():
    clock = ManualClock()
    bus = InMemoryBus(duplicate_detection_window_seconds=60.0, clock=clock)
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    clock.now += 59.9
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    assert len(bus.active_messages(queue=QUEUE)) == 1

    clock.now += 0.1
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    assert len(bus.active_messages(queue=QUEUE)) == 2


async def test_abandoning_past_the_max_delivery_count_dead_letters():
    bus = InMemoryBus(max_delivery_count=2, clock=ManualClock())
    bus.send_raw(queue=QUEUE, message=raw("poison"))
    source = bus.source(queue=QUEUE)

    for _ in range(2):
        [message] = await source.receive(max_messages=1, max_wait_seconds=0)
        await message.abandon()

    [dead] = bus.dead_letters(queue=QUEUE)
    assert (dead.raw.message_id, dead.reason, dead.delivery_count) == (
        "poison",
        "MaxDeliveryCountExceeded",
        2,
    )
    assert bus.active_messages(queue=QUEUE) == []


# Topics: subscriptions, rules and retry routing.


def topic_bus(*subscriptions: Subscription) -> InMemoryBus:
    return InMemoryBus(topics=[Topic(name=TOPIC, subscriptions=subscriptions)], clock=ManualClock())


def waiting(bus: InMemoryBus, subscription: str) -> list[str | None]:
    return [message.message_id for message in bus.active_messages(topic=TOPIC, subscription=subscription)]


async def test_subject_and_correlation_filters_choose_the_subscriptions():
    bus = topic_bus(
        Subscription(name="everything"),
        Subscription(name="changes", rules=(CorrelationFilter(subject="TransactionChanged"),)),
        Subscription(
            name="refunds-of-run-1",
            rules=(CorrelationFilter(correlation_id="run-1", properties={"change": "refund"}),),
        ),
        Subscription(
            name="either",
            rules=(CorrelationFilter(message_id="m2"), CorrelationFilter(properties={"priority": 1})),
        ),
    )
    sent = [
        raw("m1"),
        raw("m2", subject="TransactionChanged", change="refund"),
        raw("m3", correlation_id="run-1", change="refund"),
        raw("m4", correlation_id="run-2", change="refund"),
        raw("m5", priority=1.0),
        raw("m6", priority=True),
        raw("m7", subject="transactionchanged"),
    ]
    for message in sent:
        bus.send_raw_to_topic(topic=TOPIC, message=message)

    assert waiting(bus, "everything") == ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
    # Subjects compare case-sensitively.
    assert waiting(bus, "changes") == ["m2"]
    assert waiting(bus, "refunds-of-run-1") == ["m3"]
    # Rules are alternatives; a number matches across int and float, never a bool.
    assert waiting(bus, "either") == ["m2", "m5"]


async def test_a_retry_addressed_to_one_subscription_reaches_it_alone():
    bus = topic_bus(Subscription(name="a"), Subscription(name="b", rules=(TrueFilter(),)))
    original = raw("m1")
    retry_of_a = address_retry(retry_copy(original), subscription="a")
    retry_of_b = address_retry(retry_copy(original), subscription="b")

    for message in (original, retry_of_a, retry_of_b):
        bus.send_raw_to_topic(topic=TOPIC, message=message)

    assert retry_of_a.properties[RETRY_SUBSCRIPTION_PROPERTY] == "a"
    # Each subscription's retry has an id of its own: the topic's duplicate detection keeps both.
    assert len({original.message_id, retry_of_a.message_id, retry_of_b.message_id}) == 3
    assert waiting(bus, "a") == ["m1", retry_of_a.message_id]
    assert waiting(bus, "b") == ["m1", retry_of_b.message_id]


async def test_duplicate_detection_is_per_topic():
    bus = topic_bus(Subscription(name="a"), Subscription(name="b"))
    bus.send_raw_to_topic(topic=TOPIC, message=raw("m1"))
    bus.send_raw_to_topic(topic=TOPIC, message=raw("m1"))

    assert waiting(bus, "a") == ["m1"]
    assert waiting(bus, "b") == ["m1"]


def test_topology_mistakes_are_refused_clearly():
    with pytest.raises(ValueError, match="needs at least one rule"):
        Subscription(name="nothing", rules=())
    with pytest.raises(ValueError, match="at least one field"):
        CorrelationFilter()
    with pytest.raises(ValueError, match="declares a subscription twice"):
        Topic(name=TOPIC, subscriptions=(Subscription(name="a"), Subscription(name="a")))
    bus = topic_bus(Subscription(name="a"))
    with pytest.raises(ValueError, match="'other' is not declared"):
        bus.topic_publisher(topic="other")
    with pytest.raises(ValueError, match="has no subscription 'z'"):
        bus.subscription_source(topic=TOPIC, subscription="z")
    with pytest.raises(ValueError, match="name a queue, or a topic and one of its subscriptions"):
        bus.active_messages(queue=QUEUE, topic=TOPIC)
