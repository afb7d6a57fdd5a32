"""Topology loading in the format of Microsoft's Service Bus emulator (`Config.json`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from devstack.servicebus.filters import FilterSyntaxError, RuleFilter, parse_rule

if TYPE_CHECKING:
    from pathlib import Path

# Azure's own ceiling for a duration that means "never" (TimeSpan.MaxValue is about 10675199 days).
FOREVER = timedelta(days=10675199)

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class ConfigError(Exception):
    """A topology file that cannot be used; the message names the bad field."""


def parse_duration(value: Any) -> timedelta:
    """Parse an ISO 8601 duration such as `PT1M`, `PT1H` or `P1D` (no years or months: they vary)."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 duration string such as 'PT1M', got {value!r}")  # noqa: TRY004
    match = _DURATION.match(value.strip())
    if match is None or value.strip() in {"P", "PT"} or value.strip().endswith("T"):
        raise ValueError(f"{value!r} is not an ISO 8601 duration such as 'PT30S', 'PT1M', 'PT1H' or 'P1D'")
    parts = {name: float(number) for name, number in match.groupdict().items() if number is not None}
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class EntityProperties(_Model):
    """Properties shared by queues and subscriptions."""

    lock_duration: Duration = Field(default=timedelta(minutes=1), alias="LockDuration")
    max_delivery_count: int = Field(default=10, ge=1, alias="MaxDeliveryCount")
    default_message_time_to_live: Duration = Field(default=FOREVER, alias="DefaultMessageTimeToLive")
    dead_lettering_on_message_expiration: bool = Field(
        default=False, alias="DeadLetteringOnMessageExpiration"
    )
    requires_session: bool = Field(default=False, alias="RequiresSession")
    forward_to: str = Field(default="", alias="ForwardTo")
    forward_dead_lettered_messages_to: str = Field(default="", alias="ForwardDeadLetteredMessagesTo")

    @model_validator(mode="after")
    def _check_lock_duration(self) -> EntityProperties:
        # Azure allows 5 s to 5 min; shorter locks are allowed here so tests can watch them expire.
        if not timedelta(0) < self.lock_duration <= timedelta(minutes=5):
            raise ValueError("LockDuration must be greater than 0 and at most PT5M")
        return self


class QueueProperties(EntityProperties):
    """Queue properties; duplicate detection applies to queues and topics."""

    requires_duplicate_detection: bool = Field(default=False, alias="RequiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration = Field(
        default=timedelta(minutes=10), alias="DuplicateDetectionHistoryTimeWindow"
    )


class TopicProperties(_Model):
    """Topic properties."""

    default_message_time_to_live: Duration = Field(default=FOREVER, alias="DefaultMessageTimeToLive")
    requires_duplicate_detection: bool = Field(default=False, alias="RequiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration = Field(
        default=timedelta(minutes=10), alias="DuplicateDetectionHistoryTimeWindow"
    )


class SqlExpression(_Model):
    """A SQL filter or action body."""

    sql_expression: str = Field(alias="SqlExpression")


class CorrelationFilterConfig(_Model):
    """A correlation filter: every given field must equal the message's."""

    correlation_id: str | None = Field(default=None, alias="CorrelationId")
    message_id: str | None = Field(default=None, alias="MessageId")
    to: str | None = Field(default=None, alias="To")
    reply_to: str | None = Field(default=None, alias="ReplyTo")
    label: str | None = Field(default=None, alias="Label")
    session_id: str | None = Field(default=None, alias="SessionId")
    reply_to_session_id: str | None = Field(default=None, alias="ReplyToSessionId")
    content_type: str | None = Field(default=None, alias="ContentType")
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict, alias="Properties")


class RuleProperties(_Model):
    """One subscription rule: a filter and an optional SQL action."""

    filter_type: Literal["Correlation", "Sql"] = Field(alias="FilterType")
    correlation_filter: CorrelationFilterConfig | None = Field(default=None, alias="CorrelationFilter")
    sql_filter: SqlExpression | None = Field(default=None, alias="SqlFilter")
    action: SqlExpression | None = Field(default=None, alias="Action")

    @model_validator(mode="after")
    def _check_filter_present(self) -> RuleProperties:
        if self.filter_type == "Correlation" and self.correlation_filter is None:
            raise ValueError("FilterType 'Correlation' needs a CorrelationFilter")
        if self.filter_type == "Sql" and self.sql_filter is None:
            raise ValueError("FilterType 'Sql' needs a SqlFilter")
        return self


class RuleConfig(_Model):
    """A named rule."""

    name: str = Field(min_length=1, alias="Name")
    properties: RuleProperties = Field(alias="Properties")


class SubscriptionConfig(_Model):
    """A topic subscription."""

    name: str = Field(min_length=1, alias="Name")
    properties: EntityProperties = Field(default_factory=EntityProperties, alias="Properties")
    rules: list[RuleConfig] = Field(default_factory=list, alias="Rules")


class QueueConfig(_Model):
    """A queue."""

    name: str = Field(min_length=1, alias="Name")
    properties: QueueProperties = Field(default_factory=QueueProperties, alias="Properties")


class TopicConfig(_Model):
    """A topic and its subscriptions."""

    name: str = Field(min_length=1, alias="Name")
    properties: TopicProperties = Field(default_factory=TopicProperties, alias="Properties")
    subscriptions: list[SubscriptionConfig] = Field(default_factory=list, alias="Subscriptions")


class NamespaceConfig(_Model):
    """One namespace (Microsoft's emulator, like this one, serves exactly one)."""

    name: str = Field(min_length=1, alias="Name")
    queues: list[QueueConfig] = Field(default_factory=list, alias="Queues")
    topics: list[TopicConfig] = Field(default_factory=list, alias="Topics")


class UserConfig(_Model):
    """The `UserConfig` object."""

    namespaces: list[NamespaceConfig] = Field(min_length=1, max_length=1, alias="Namespaces")
    # Microsoft's emulator reads a logging target here; accepted and ignored (logs go to stderr).
    logging: dict[str, Any] | None = Field(default=None, alias="Logging")


class ConfigFile(_Model):
    """The whole file."""

    user_config: UserConfig = Field(alias="UserConfig")


@dataclass(frozen=True)
class SubscriptionTopology:
    """A validated subscription with its parsed rules."""

    name: str
    properties: EntityProperties
    rules: tuple[RuleFilter, ...]


@dataclass(frozen=True)
class TopicTopology:
    """A validated topic."""

    name: str
    properties: TopicProperties
    subscriptions: tuple[SubscriptionTopology, ...]


@dataclass(frozen=True)
class Topology:
    """The validated namespace the emulator serves."""

    namespace: str
    queues: tuple[QueueConfig, ...] = ()
    topics: tuple[TopicTopology, ...] = ()
    entity_names: frozenset[str] = field(default_factory=frozenset)


def format_location(location: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `UserConfig.Namespaces[0].Queues[2].Properties.LockDuration`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _validation_message(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{format_location(tuple(item['loc'])) or '<root>'}: {message}")
    return "\n".join(lines)


def parse_topology(document: Any) -> Topology:
    """Validate a decoded `Config.json` document; raises `ConfigError` naming the bad field."""
    try:
        config = ConfigFile.model_validate(document)
    except ValidationError as error:
        raise ConfigError(_validation_message(error)) from None
    namespace = config.user_config.namespaces[0]
    base = "UserConfig.Namespaces[0]"
    seen: dict[str, str] = {}

    def claim(name: str, where: str) -> None:
        key = name.lower()  # entity names are case-insensitive in Azure
        if key in seen:
            raise ConfigError(f"{where}.Name: entity name {name!r} is already used at {seen[key]}")
        seen[key] = where

    for index, queue in enumerate(namespace.queues):
        claim(queue.name, f"{base}.Queues[{index}]")
    topics = []
    for topic_index, topic in enumerate(namespace.topics):
        topic_where = f"{base}.Topics[{topic_index}]"
        claim(topic.name, topic_where)
        subscriptions = []
        sub_names: set[str] = set()
        for sub_index, subscription in enumerate(topic.subscriptions):
            sub_where = f"{topic_where}.Subscriptions[{sub_index}]"
            if subscription.name.lower() in sub_names:
                raise ConfigError(f"{sub_where}.Name: subscription {subscription.name!r} is declared twice")
            sub_names.add(subscription.name.lower())
            rules = []
            for rule_index, rule in enumerate(subscription.rules):
                rule_where = f"{sub_where}.Rules[{rule_index}].Properties"
                try:
                    rules.append(parse_rule(_rule_spec(rule)))
                except FilterSyntaxError as error:
                    part = "Action" if error.in_action else "SqlFilter"
                    raise ConfigError(f"{rule_where}.{part}.SqlExpression: {error}") from None
            subscriptions.append(
                SubscriptionTopology(subscription.name, subscription.properties, tuple(rules))
            )
        topics.append(TopicTopology(topic.name, topic.properties, tuple(subscriptions)))
    _check_forwarding(namespace, seen)
    return Topology(
        namespace=namespace.name,
        queues=tuple(namespace.queues),
        topics=tuple(topics),
        entity_names=frozenset(seen),
    )


def _rule_spec(rule: RuleConfig) -> dict[str, Any]:
    props = rule.properties
    spec: dict[str, Any] = {
        "name": rule.name,
        "action": props.action.sql_expression if props.action else None,
    }
    if props.filter_type == "Sql" and props.sql_filter is not None:
        spec["sql"] = props.sql_filter.sql_expression
    elif props.correlation_filter is not None:
        spec["correlation"] = props.correlation_filter.model_dump(exclude_none=True)
    return spec


def _check_forwarding(namespace: NamespaceConfig, names: dict[str, str]) -> None:
    base = "UserConfig.Namespaces[0]"
    targets: list[tuple[str, str]] = []
    for index, queue in enumerate(namespace.queues):
        where = f"{base}.Queues[{index}].Properties"
        targets += [(f"{where}.ForwardTo", queue.properties.forward_to)]
        targets += [
            (f"{where}.ForwardDeadLetteredMessagesTo", queue.properties.forward_dead_lettered_messages_to)
        ]
    for topic_index, topic in enumerate(namespace.topics):
        for sub_index, sub in enumerate(topic.subscriptions):
            where = f"{base}.Topics[{topic_index}].Subscriptions[{sub_index}].Properties"
            targets += [(f"{where}.ForwardTo", sub.properties.forward_to)]
            targets += [
                (f"{where}.ForwardDeadLetteredMessagesTo", sub.properties.forward_dead_lettered_messages_to)
            ]
    for where, target in targets:
        if target and target.lower() not in names:
            raise ConfigError(
                f"{where}: forwarding target {target!r} is not a queue or topic of this namespace"
            )


def load_topology(path: Path) -> Topology:
    """Read and validate a topology file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    return parse_topology(document)
