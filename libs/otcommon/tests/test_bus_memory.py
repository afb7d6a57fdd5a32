import asyncio

import pytest
from bus_contract import WAIT_SECONDS, BusContract

from otcommon.bus import DeadLetteredMessage, InMemoryBus
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
