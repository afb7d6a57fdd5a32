"""Retries on a topic reach only the subscription that failed, not every subscription of the topic.

A retry is a copy scheduled on the entity the message came from (see `outcomes`). On a queue that is the
end of it; on a topic the copy would be fanned out to every subscription again. So a subscription addresses
its copy: `RETRY_SUBSCRIPTION_PROPERTY` names it, and every subscription of a topic declares one rule that
takes new messages (no address) and its own retries only (`retry_routing_sql`). Azure evaluates that rule
when the scheduled copy is enqueued, so the topic's other subscriptions never see it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from otcommon.bus.outcomes import ORIGINAL_MESSAGE_ID_PROPERTY, attempt_of, retry_message_id

if TYPE_CHECKING:
    from otcommon.messages import RawMessage

RETRY_SUBSCRIPTION_PROPERTY = "retrySubscription"


def address_retry(copy: RawMessage, *, subscription: str) -> RawMessage:
    """A retry copy addressed to one subscription, with a message id of its own for that subscription."""
    original_id = str(copy.properties.get(ORIGINAL_MESSAGE_ID_PROPERTY, copy.message_id or ""))
    return dataclasses.replace(
        copy,
        message_id=retry_message_id(
            original_id=original_id, attempt=attempt_of(copy), subscription=subscription
        ),
        properties={**copy.properties, RETRY_SUBSCRIPTION_PROPERTY: subscription},
    )


def is_for_subscription(raw: RawMessage, *, subscription: str) -> bool:
    """Whether the routing rule of `subscription` takes the message: it is new, or a retry addressed here."""
    address = raw.properties.get(RETRY_SUBSCRIPTION_PROPERTY)
    return address is None or address == subscription


def retry_routing_sql(subscription: str, *, condition: str | None = None) -> str:
    """The SQL filter of the one rule each subscription of a topic declares (in Azure and Config.json).

    A subscription that wants some messages only gives its `condition` (SQL, such as
    `sys.Label = 'TransactionChanged'`): it goes into the same rule, because rules are alternatives and a
    rule of its own would take the other subscriptions' retries too.
    """
    quoted = subscription.replace("'", "''")
    routing = f"NOT EXISTS({RETRY_SUBSCRIPTION_PROPERTY}) OR {RETRY_SUBSCRIPTION_PROPERTY} = '{quoted}'"
    return routing if condition is None else f"({condition}) AND ({routing})"
