"""Start a fresh stand-in for one sample and give the environment variables the samples read."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.cosmos import EMULATOR_KEY, start_cosmos
from devstack.servicebus.testing import running_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

SERVICEBUS_TOPOLOGY = Path(__file__).parent / "servicebus-topology.json"
QUEUE, SESSION_QUEUE = "conformance-queue", "conformance-session-queue"
TOPIC, SUBSCRIPTION = "conformance-topic", "conformance-subscription"
COSMOS_DATABASE, COSMOS_CONTAINER = "conformance-db", "conformance-container"


@contextlib.contextmanager
def servicebus_environment() -> Iterator[dict[str, str]]:
    """A Service Bus emulator on a free port, and the variables of the Service Bus samples."""
    with running_emulator(SERVICEBUS_TOPOLOGY) as emulator:
        yield {
            "SERVICEBUS_CONNECTION_STR": emulator.connection_string,
            # A namespace with a port: the SDK keeps it when TLS is off (the rewritten samples turn it off).
            "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": f"localhost:{emulator.port}",
            "SERVICEBUS_SAS_POLICY": emulator.key_name,
            "SERVICEBUS_SAS_KEY": emulator.key,
            "SERVICEBUS_QUEUE_NAME": QUEUE,
            "SERVICEBUS_SESSION_QUEUE_NAME": SESSION_QUEUE,
            "SERVICEBUS_SESSION_ID": "conformance-session",
            "SERVICEBUS_TOPIC_NAME": TOPIC,
            "SERVICEBUS_SUBSCRIPTION_NAME": SUBSCRIPTION,
        }


@contextlib.contextmanager
def cosmos_environment() -> Iterator[dict[str, str]]:
    """A Cosmos DB stand-in on a free port, and the variables of the Cosmos DB samples."""
    process = start_cosmos()
    try:
        endpoint = process.ready["endpoint"]
        yield {
            "ACCOUNT_HOST": endpoint,
            "ACCOUNT_URI": endpoint,
            "COSMOS_ACCOUNT_URL": endpoint,
            "ACCOUNT_KEY": EMULATOR_KEY,
            "COSMOS_DATABASE": COSMOS_DATABASE,
            "DATABASE_NAME": COSMOS_DATABASE,
            "COSMOS_CONTAINER": COSMOS_CONTAINER,
            "CONN_STR": f"AccountEndpoint={endpoint};AccountKey={EMULATOR_KEY};",
        }
    finally:
        process.stop()
