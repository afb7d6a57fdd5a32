"""Topics, subscriptions and their rules as the in-memory bus models them (Azure's SQL-free filters).

A subscription takes a message when any of its rules matches. Azure's two filters without SQL are here:
`TrueFilter` (the `$Default` rule) and `CorrelationFilter` (every given field equals the message's; only
the fields a `RawMessage` carries: no `To`, `ReplyTo` or session ids). On top
of its rules, every subscription applies the retry routing rule that each subscription in Azure declares
(see `otcommon.bus.routing`), so a retry reaches only the subscription that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otcommon.bus.routing import is_for_subscription

if TYPE_CHECKING:
    from collections.abc import Mapping

    from otcommon.messages import PropertyValue, RawMessage


@dataclass(frozen=True, kw_only=True)
class TrueFilter:
    """Matches every message: the rule a subscription gets when none is declared."""

    def matches(self, raw: RawMessage) -> bool:  # noqa: ARG002  # the point is to ignore it
        """Always true."""
        return True


@dataclass(frozen=True, kw_only=True)
class CorrelationFilter:
    """Matches when every given field equals the message's; fields left None are not compared.

    String comparison is case-sensitive; application properties compare by value and kind (a bool never
    equals a number, an int equals the same float), as Azure compares them.
    """

    correlation_id: str | None = None
    message_id: str | None = None
    subject: str | None = None
    content_type: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = (self.correlation_id, self.message_id, self.subject, self.content_type)
        if all(value is None for value in given) and not self.properties:
            raise ValueError("a correlation filter needs at least one field (TrueFilter matches everything)")

    def matches(self, raw: RawMessage) -> bool:
        """Whether every given field equals the message's."""
        expected = (
            (self.correlation_id, raw.correlation_id),
            (self.message_id, raw.message_id),
            (self.subject, raw.subject),
            (self.content_type, raw.content_type),
        )
        if any(wanted is not None and wanted != actual for wanted, actual in expected):
            return False
        return all(_same_value(wanted, raw.properties.get(name)) for name, wanted in self.properties.items())


RuleFilter = TrueFilter | CorrelationFilter


@dataclass(frozen=True, kw_only=True)
class Subscription:
    """A subscription of a topic with its rules (by default, Azure's `$Default`: every message)."""

    name: str
    rules: tuple[RuleFilter, ...] = (TrueFilter(),)

    def __post_init__(self) -> None:
        if not self.rules:
            # Azure accepts a subscription without rules and silently gives it nothing.
            raise ValueError(f"subscription {self.name!r} needs at least one rule")

    def takes(self, raw: RawMessage) -> bool:
        """Whether a message sent to the topic lands in this subscription."""
        return is_for_subscription(raw, subscription=self.name) and any(
            rule.matches(raw) for rule in self.rules
        )


@dataclass(frozen=True, kw_only=True)
class Topic:
    """A topic and its subscriptions."""

    name: str
    subscriptions: tuple[Subscription, ...]

    def __post_init__(self) -> None:
        names = [subscription.name for subscription in self.subscriptions]
        if len(set(names)) != len(names):
            raise ValueError(f"topic {self.name!r} declares a subscription twice")


def _same_value(wanted: PropertyValue, actual: PropertyValue | None) -> bool:
    if actual is None:
        return False
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return isinstance(wanted, bool) and isinstance(actual, bool) and wanted == actual
    if isinstance(wanted, int | float) and isinstance(actual, int | float):
        return wanted == actual
    return type(wanted) is type(actual) and wanted == actual
