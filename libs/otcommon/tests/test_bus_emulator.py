"""The bus contract through the real azure-servicebus SDK against the local Service Bus emulator."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from azure.servicebus import ServiceBusMessage
from bus_contract import BusContract, ServiceBusHarness, ServiceBusTopicHarness, TopicBusContract

from devstack.servicebus.testing import running_emulator
from otcommon.bus import client_from_connection_string, queue_source, retry_routing_sql

pytestmark = pytest.mark.integration

# One queue (or topic) per test: the contract wants a fresh, empty entity with duplicate detection on.
QUEUES = 12
TOPICS = 14
ENTITY = {"LockDuration": "PT30S", "MaxDeliveryCount": 10}
RENEWAL_QUEUE = "renewal"  # a lock shorter than the contract's, so that a test outlives it
DUPLICATE_DETECTION = {"RequiresDuplicateDetection": True, "DuplicateDetectionHistoryTimeWindow": "PT10M"}


def routed_subscription(name: str, *, condition: str | None = None) -> dict[str, object]:
    """A subscription declared as Azure needs it: new messages (that meet `condition`) and its own retries."""
    sql = retry_routing_sql(name, condition=condition)
    rule = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": sql}}
    return {"Name": name, "Properties": ENTITY, "Rules": [{"Name": "new-or-own-retries", "Properties": rule}]}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    config = {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "contract",
                    "Queues": [
                        *(
                            {"Name": f"contract-{n}", "Properties": ENTITY | DUPLICATE_DETECTION}
                            for n in range(QUEUES)
                        ),
                        {"Name": RENEWAL_QUEUE, "Properties": ENTITY | {"LockDuration": "PT16S"}},
                    ],
                    "Topics": [
                        {
                            "Name": f"contract-topic-{n}",
                            "Properties": DUPLICATE_DETECTION,
                            "Subscriptions": [
                                routed_subscription("primary"),
                                routed_subscription("sibling"),
                                routed_subscription("changes", condition="sys.Label = 'TransactionChanged'"),
                            ],
                        }
                        for n in range(TOPICS)
                    ],
                }
            ],
            "Logging": {"Type": "Console"},
        }
    }
    path = tmp_path_factory.mktemp("servicebus") / "Config.json"
    path.write_text(json.dumps(config))
    with running_emulator(path) as running:
        yield running, itertools.count(), itertools.count()


class TestServiceBusEmulator(BusContract):
    @pytest.fixture
    async def harness(self, emulator):
        running, queue_numbers, _ = emulator
        number = next(queue_numbers)
        assert number < QUEUES, "add queues to the contract topology"
        async with client_from_connection_string(connection_string=running.connection_string) as client:
            harness = ServiceBusHarness(client=client, queue_name=f"contract-{number}")
            yield harness
            await harness.close()


class TestServiceBusEmulatorTopic(TopicBusContract):
    @pytest.fixture
    async def harness(self, emulator):
        running, _, topic_numbers = emulator
        number = next(topic_numbers)
        assert number < TOPICS, "add topics to the contract topology"
        async with client_from_connection_string(connection_string=running.connection_string) as client:
            harness = ServiceBusTopicHarness(client=client, topic_name=f"contract-topic-{number}")
            yield harness
            await harness.close()


async def test_a_message_held_past_its_lock_is_renewed_from_the_lead_and_completes(emulator):
    # The lock is 16 s; the renewer gets the message 15 s before it expires (not at receive: the lead
    # must exceed the renewer's own 10 s renew period) and keeps it locked past its first lock: no
    # other receiver gets it, and it completes.
    running, _, _ = emulator
    async with client_from_connection_string(connection_string=running.connection_string) as client:
        async with client.get_queue_sender(RENEWAL_QUEUE) as sender:
            await sender.send_messages(ServiceBusMessage("held past its lock"))
        source = queue_source(client=client, queue_name=RENEWAL_QUEUE, renewal_lead_seconds=15.0)
        other = queue_source(client=client, queue_name=RENEWAL_QUEUE)
        try:
            [held] = await source.receive(max_messages=1, max_wait_seconds=5)
            await asyncio.sleep(18)
            assert await other.receive(max_messages=1, max_wait_seconds=2) == []
            await held.complete()
        finally:
            await other.close()
            await source.close()
