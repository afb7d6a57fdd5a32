"""The bus contract through the real azure-servicebus SDK against the local Service Bus emulator."""

from __future__ import annotations

import itertools
import json

import pytest
from bus_contract import BusContract, ServiceBusHarness

from devstack.servicebus.testing import running_emulator
from otcommon.bus import client_from_connection_string

pytestmark = pytest.mark.integration

QUEUES = 12


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    # One queue per test: the contract wants a fresh, empty queue with duplicate detection on.
    queue = {
        "LockDuration": "PT30S",
        "MaxDeliveryCount": 10,
        "RequiresDuplicateDetection": True,
        "DuplicateDetectionHistoryTimeWindow": "PT10M",
    }
    config = {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "contract",
                    "Queues": [{"Name": f"contract-{n}", "Properties": queue} for n in range(QUEUES)],
                    "Topics": [],
                }
            ],
            "Logging": {"Type": "Console"},
        }
    }
    path = tmp_path_factory.mktemp("servicebus") / "Config.json"
    path.write_text(json.dumps(config))
    with running_emulator(path) as running:
        yield running, itertools.count()


@pytest.fixture
async def harness(emulator):
    running, numbers = emulator
    number = next(numbers)
    assert number < QUEUES, "add queues to the contract topology"
    client = client_from_connection_string(connection_string=running.connection_string)
    async with client:
        harness = ServiceBusHarness(client=client, queue_name=f"contract-{number}")
        yield harness
        await harness.close()


class TestServiceBusEmulator(BusContract):
    pass
