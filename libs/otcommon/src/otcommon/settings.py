"""Configuration shared by every service: Cosmos DB, Service Bus, telemetry and logging.

Each service extends :class:`ServiceSettings` with its own fields. Settings are read from the
environment (prefix ``OT_``) when :func:`load_settings` is called in ``main()``, never at import
time. A missing or invalid variable stops the service at start with a message naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OT_"

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigurationError(Exception):
    """The environment does not hold a valid configuration; the message names each variable."""


@dataclass(frozen=True, slots=True)
class CosmosConnection:
    """Where the Cosmos DB account is and how to authenticate (a key, or Microsoft Entra ID)."""

    endpoint: str
    key: SecretStr | None
    database: str

    @property
    def uses_entra_id(self) -> bool:
        """True when no key is configured, so ``DefaultAzureCredential`` authenticates."""
        return self.key is None

    @property
    def is_local_stand_in(self) -> bool:
        """True for plain-HTTP endpoints: only local stand-ins serve Cosmos DB without TLS."""
        return self.endpoint.startswith("http://")


@dataclass(frozen=True, slots=True)
class ServiceBusConnection:
    """A Service Bus connection string, or a namespace reached with Microsoft Entra ID."""

    connection_string: SecretStr | None
    fully_qualified_namespace: str | None


def parse_connection_string(value: str) -> dict[str, str]:
    """Split an Azure ``Key=Value;Key=Value`` connection string (values may contain ``=``)."""
    parts: dict[str, str] = {}
    for segment in value.strip().split(";"):
        if not segment.strip():
            continue
        key, sep, val = segment.partition("=")
        if not sep:
            raise ValueError(f"segment {key.strip()!r} has no '='")
        parts[key.strip().lower()] = val.strip()
    return parts


class ServiceSettings(BaseSettings):
    """Settings every service shares; services subclass it and add their own ``OT_`` fields."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    cosmos_connection_string: SecretStr | None = Field(
        default=None, description="Cosmos DB connection string (AccountEndpoint=...;AccountKey=...;)."
    )
    cosmos_endpoint: str | None = Field(
        default=None, description="Cosmos DB account endpoint, used when no connection string is given."
    )
    cosmos_key: SecretStr | None = Field(
        default=None, description="Cosmos DB account key; without one, DefaultAzureCredential is used."
    )
    cosmos_database: str = Field(default="opentickets", min_length=1, description="Cosmos DB database name.")

    servicebus_connection_string: SecretStr | None = Field(
        default=None, description="Service Bus connection string (SAS key, or the local emulator's)."
    )
    servicebus_namespace: str | None = Field(
        default=None,
        description="Fully qualified Service Bus namespace (<name>.servicebus.windows.net) for Entra ID.",
    )

    service_name: str = Field(
        default="opentickets",
        validation_alias=AliasChoices("OTEL_SERVICE_NAME", "OT_SERVICE_NAME"),
        description="Service name reported in logs and traces.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "OT_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector endpoint; tracing exports nothing when unset.",
    )
    log_level: LogLevel = Field(default="INFO", description="Minimum log level.")
    log_format: LogFormat = Field(
        default="auto", description="json, console, or auto (console on a terminal, JSON otherwise)."
    )

    @model_validator(mode="after")
    def _check_connections(self) -> ServiceSettings:
        self._cosmos()
        self._servicebus()
        return self

    @property
    def cosmos(self) -> CosmosConnection:
        """The resolved Cosmos DB connection."""
        return self._cosmos()

    @property
    def servicebus(self) -> ServiceBusConnection:
        """The resolved Service Bus connection."""
        return self._servicebus()

    def _cosmos(self) -> CosmosConnection:
        if self.cosmos_connection_string is not None:
            try:
                parts = parse_connection_string(self.cosmos_connection_string.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"OT_COSMOS_CONNECTION_STRING is malformed: {exc}") from None
            endpoint = parts.get("accountendpoint")
            if not endpoint:
                raise ValueError("OT_COSMOS_CONNECTION_STRING lacks AccountEndpoint=")
            key = parts.get("accountkey")
            return CosmosConnection(
                endpoint=endpoint,
                key=SecretStr(key) if key else None,
                database=self.cosmos_database,
            )
        if not self.cosmos_endpoint:
            raise ValueError(
                "set OT_COSMOS_ENDPOINT (with OT_COSMOS_KEY or Entra ID) or OT_COSMOS_CONNECTION_STRING"
            )
        if not self.cosmos_endpoint.startswith(("https://", "http://")):
            raise ValueError("OT_COSMOS_ENDPOINT must be an http(s):// URL")
        return CosmosConnection(
            endpoint=self.cosmos_endpoint, key=self.cosmos_key, database=self.cosmos_database
        )

    def _servicebus(self) -> ServiceBusConnection:
        if self.servicebus_connection_string is not None:
            try:
                parts = parse_connection_string(self.servicebus_connection_string.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"OT_SERVICEBUS_CONNECTION_STRING is malformed: {exc}") from None
            if not parts.get("endpoint", "").startswith("sb://"):
                raise ValueError("OT_SERVICEBUS_CONNECTION_STRING lacks Endpoint=sb://...")
            return ServiceBusConnection(
                connection_string=self.servicebus_connection_string, fully_qualified_namespace=None
            )
        if not self.servicebus_namespace:
            raise ValueError("set OT_SERVICEBUS_CONNECTION_STRING or OT_SERVICEBUS_NAMESPACE")
        return ServiceBusConnection(
            connection_string=None, fully_qualified_namespace=self.servicebus_namespace
        )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def env_var_name(settings_cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable that feeds ``field_name`` of ``settings_cls``."""
    field = settings_cls.model_fields.get(field_name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        first = field.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    prefix = settings_cls.model_config.get("env_prefix", "")
    return f"{prefix}{field_name}".upper()


def load_settings(settings_cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment, or raise ConfigurationError naming every bad variable."""
    try:
        return settings_cls()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(settings_cls, exc)) from None


def describe_validation_error(settings_cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per problem, each naming the environment variable to fix."""
    lines = ["invalid configuration:"]
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        if loc and isinstance(loc[0], str) and loc[0] in settings_cls.model_fields:
            lines.append(f"  {env_var_name(settings_cls, loc[0])}: {error['msg']}")
        else:
            # Model-level checks already name their variables in the message.
            lines.append(f"  {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)
