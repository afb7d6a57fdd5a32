"""Service Bus plumbing behind a small typed interface, with an in-memory fake for tests."""

from otcommon.bus.backoff import Backoff
from otcommon.bus.consumer import Consumer, ConsumerSettings, Delivery, Handler
from otcommon.bus.errors import (
    PermanentError,
    PublishError,
    RetryableError,
    SettlementError,
    is_transient_error,
)
from otcommon.bus.interface import DeadLetteredMessage, MessagePublisher, MessageSource, ReceivedMessage
from otcommon.bus.memory import InMemoryBus, InMemoryPublisher, InMemorySource
from otcommon.bus.outcomes import Outcome, RetryPolicy, Settlement, apply_outcome, decide_outcome
from otcommon.bus.publisher import BatchSender, ServiceBusPublisher
from otcommon.bus.routing import RETRY_SUBSCRIPTION_PROPERTY, address_retry, retry_routing_sql
from otcommon.bus.servicebus import (
    ServiceBusReceived,
    ServiceBusSource,
    client_from_connection_string,
    client_from_namespace,
    queue_publisher,
    queue_source,
    subscription_source,
    topic_publisher,
)
from otcommon.bus.topology import CorrelationFilter, Subscription, Topic, TrueFilter

__all__ = [
    "RETRY_SUBSCRIPTION_PROPERTY",
    "Backoff",
    "BatchSender",
    "Consumer",
    "ConsumerSettings",
    "CorrelationFilter",
    "DeadLetteredMessage",
    "Delivery",
    "Handler",
    "InMemoryBus",
    "InMemoryPublisher",
    "InMemorySource",
    "MessagePublisher",
    "MessageSource",
    "Outcome",
    "PermanentError",
    "PublishError",
    "ReceivedMessage",
    "RetryPolicy",
    "RetryableError",
    "ServiceBusPublisher",
    "ServiceBusReceived",
    "ServiceBusSource",
    "Settlement",
    "SettlementError",
    "Subscription",
    "Topic",
    "TrueFilter",
    "address_retry",
    "apply_outcome",
    "client_from_connection_string",
    "client_from_namespace",
    "decide_outcome",
    "is_transient_error",
    "queue_publisher",
    "queue_source",
    "retry_routing_sql",
    "subscription_source",
    "topic_publisher",
]
