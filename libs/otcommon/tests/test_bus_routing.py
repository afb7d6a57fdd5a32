"""Retry routing: the project topology declares, on every subscription, the rule that keeps retries apart."""

from __future__ import annotations

import pytest

from devstack.paths import project_topology
from devstack.servicebus.config import load_topology
from devstack.servicebus.filters import MessageView, parse_rule
from otcommon.bus import RETRY_SUBSCRIPTION_PROPERTY, address_retry, retry_routing_sql
from otcommon.bus.outcomes import retry_copy
from otcommon.messages import RawMessage

TOPOLOGY = load_topology(project_topology())
SUBSCRIPTIONS = [(topic, subscription) for topic in TOPOLOGY.topics for subscription in topic.subscriptions]


def takes(rules, raw: RawMessage) -> bool:
    # As the emulator and Azure route: no rules is the default rule; otherwise any matching rule.
    view = MessageView(system={"label": raw.subject, "messageid": raw.message_id}, user=dict(raw.properties))
    return not rules or any(rule.matches(view) for rule in rules)


def test_the_project_declares_topics_with_several_subscriptions():
    topics = {topic.name: {sub.name for sub in topic.subscriptions} for topic in TOPOLOGY.topics}
    assert topics == {"transaction-changes": {"query-api-live", "audit"}}


@pytest.mark.parametrize(("topic", "subscription"), SUBSCRIPTIONS, ids=lambda item: item.name)
def test_each_subscription_takes_new_messages_and_its_own_retries_only(topic, subscription):
    new = RawMessage(body=b"{}", subject="TransactionChanged", message_id="m1", properties={"attempt": 1})
    others = [sub.name for sub in topic.subscriptions if sub.name != subscription.name]

    assert takes(subscription.rules, new)
    assert takes(subscription.rules, address_retry(retry_copy(new), subscription=subscription.name))
    for other in others:
        assert not takes(subscription.rules, address_retry(retry_copy(new), subscription=other))


def test_the_routing_rule_quotes_the_subscription_name():
    rule = parse_rule({"name": "r", "sql": retry_routing_sql("it's")})

    def view(address: str | None) -> MessageView:
        user = {} if address is None else {RETRY_SUBSCRIPTION_PROPERTY: address}
        return MessageView(system={}, user=user)

    assert rule.matches(view(None))
    assert rule.matches(view("it's"))
    assert not rule.matches(view("its"))


def test_a_condition_goes_into_the_same_rule():
    sql = retry_routing_sql("changes", condition="sys.Label = 'TransactionChanged'")
    rule = parse_rule({"name": "r", "sql": sql})

    def view(subject: str, address: str | None = None) -> MessageView:
        user = {} if address is None else {RETRY_SUBSCRIPTION_PROPERTY: address}
        return MessageView(system={"label": subject}, user=user)

    assert rule.matches(view("TransactionChanged"))
    assert rule.matches(view("TransactionChanged", "changes"))
    assert not rule.matches(view("TransactionChanged", "query-api-live"))
    assert not rule.matches(view("PaymentEnrichmentRequested"))
