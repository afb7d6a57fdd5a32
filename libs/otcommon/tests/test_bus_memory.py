import asyncio

import pytest
from bus_contract import WAIT_SECONDS, BusContract

from otcommon.bus import DeadLetteredMessage, InMemoryBus, SettlementError
from otcommon.messages import RawMessage

QUEUE = "contract"


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


@pytest.fixture
def harness():
    return InMemoryHarness()


class TestInMemoryBus(BusContract):
    pass


# Behaviour of the fake beyond the contract, which service unit tests rely on.


def raw(message_id: str) -> RawMessage:
    return RawMessage(body=b"{}", subject="T", message_id=message_id)


async def test_an_expired_lock_makes_the_message_available_again():
    bus = InMemoryBus(lock_duration_seconds=0.05)
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    source = bus.source(queue=QUEUE)

    [first] = await source.receive(max_messages=1, max_wait_seconds=1.0)
    [again] = await source.receive(max_messages=1, max_wait_seconds=1.0)

    assert again.raw.message_id == "m1"
    assert (first.delivery_count, again.delivery_count) == (1, 2)
    with pytest.raises(SettlementError):
        await first.complete()
    await again.complete()
    assert bus.active_messages(queue=QUEUE) == []


async def test_a_locked_message_is_not_handed_out_twice():
    bus = InMemoryBus()
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    source = bus.source(queue=QUEUE)

    assert len(await source.receive(max_messages=5, max_wait_seconds=0.01)) == 1
    assert await source.receive(max_messages=5, max_wait_seconds=0.01) == []


async def test_a_scheduled_message_stays_hidden_until_its_time():
    bus = InMemoryBus()
    bus.send_raw(queue=QUEUE, message=raw("later"), delay_seconds=0.1)
    source = bus.source(queue=QUEUE)

    assert await source.receive(max_messages=1, max_wait_seconds=0.01) == []
    [message] = await source.receive(max_messages=1, max_wait_seconds=1.0)
    assert message.raw.message_id == "later"


async def test_settling_twice_fails():
    bus = InMemoryBus()
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    [message] = await bus.source(queue=QUEUE).receive(max_messages=1, max_wait_seconds=0.01)

    await message.complete()
    with pytest.raises(SettlementError):
        await message.abandon()


async def test_duplicates_are_accepted_again_after_the_detection_window():
    bus = InMemoryBus(duplicate_detection_window_seconds=0.05)
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    assert len(bus.active_messages(queue=QUEUE)) == 1

    await asyncio.sleep(0.06)
    bus.send_raw(queue=QUEUE, message=raw("m1"))
    assert len(bus.active_messages(queue=QUEUE)) == 2


async def test_abandoning_past_the_max_delivery_count_dead_letters():
    bus = InMemoryBus(max_delivery_count=2)
    bus.send_raw(queue=QUEUE, message=raw("poison"))
    source = bus.source(queue=QUEUE)

    for _ in range(2):
        [message] = await source.receive(max_messages=1, max_wait_seconds=0.01)
        await message.abandon()

    [dead] = bus.dead_letters(queue=QUEUE)
    assert (dead.raw.message_id, dead.reason, dead.delivery_count) == (
        "poison",
        "MaxDeliveryCountExceeded",
        2,
    )
    assert bus.active_messages(queue=QUEUE) == []
