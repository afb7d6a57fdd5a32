"""Typed bus messages, their versioned envelope, and conversion to and from Service Bus messages.

Wire format (the contract between services, whatever language reads it):

- body: the message's fields as UTF-8 JSON in camelCase, ``content_type="application/json"``;
- ``subject``: the message type name (``PaymentEnrichmentRequested``);
- ``message_id``: deterministic when the publisher gives a key, so duplicate detection drops re-publishes;
- ``correlation_id``: the unit of work that caused the message (an ingest run, a webhook event);
- application properties: ``schemaVersion`` (int), ``attempt`` (int, 1 for a first publish), and W3C
  trace context as ``traceparent`` (copied into ``Diagnostic-Id``, as the Azure SDKs do) and ``tracestate``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from otcommon.enrichment import EnrichmentReason
from otcommon.schemas import PAYMENT_ID_PATTERN

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.context import Context

CONTENT_TYPE = "application/json"
SCHEMA_VERSION_PROPERTY = "schemaVersion"
ATTEMPT_PROPERTY = "attempt"
TRACEPARENT_PROPERTY = "traceparent"
TRACESTATE_PROPERTY = "tracestate"
DIAGNOSTIC_ID_PROPERTY = "Diagnostic-Id"

# Service Bus rejects message ids longer than 128 characters.
_MAX_MESSAGE_ID_LENGTH = 128
# Fixed namespace so that every service derives the same id from the same key.
_MESSAGE_ID_NAMESPACE = uuid.UUID("6f1d7c0e-5b0a-4f43-9d59-3c1f0f6a8e21")
# The wire format is W3C trace context whatever propagators the process configures globally.
_PROPAGATOR = TraceContextTextMapPropagator()

PropertyValue = str | int | float | bool


class Message(BaseModel):
    """Base class of every bus message: frozen, camelCase JSON, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
    )

    message_type: ClassVar[str]
    # Bump when a change is not backward compatible, and teach decode_message to read the old version.
    schema_version: ClassVar[int] = 1

    def default_key(self) -> str | None:
        """Key the message id is derived from when the publisher gives none; None means a random id."""
        return None


class PaymentEnrichmentRequested(Message):
    """A payment needs its Stripe routing and payout facts looked up."""

    message_type: ClassVar[str] = "PaymentEnrichmentRequested"

    payment_id: str = Field(pattern=PAYMENT_ID_PATTERN.pattern, max_length=255)
    transaction_id: str = Field(min_length=1)
    event_id: str = Field(min_length=1)
    requested_at: AwareDatetime
    reason: EnrichmentReason = EnrichmentReason.NEW

    def default_key(self) -> str:
        """Without a key from the publisher, a first request is one per payment and order; a requeue its own.

        A second order of a payment enriched already must not be dropped as a duplicate of the
        first order's request, so the order is part of the key. Ingest passes a finer key of its
        own (the source's stamp too, see ``ingest.queueing.new_request_key``)."""
        # A requeue keyed on the payment alone would be swallowed by the duplicate detection window.
        if self.reason is EnrichmentReason.NEW:
            return f"{self.payment_id}/{self.transaction_id}"
        return f"{self.payment_id}/{self.reason.value}/{self.requested_at.isoformat()}"


class TransactionChange(StrEnum):
    """What happened to a transaction record."""

    CREATED = "created"
    UPDATED = "updated"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    ENRICHED = "enriched"
    PAYOUT = "payout"
    """The payout carrying the payment's money moved (its deposit fields changed)."""


class TransactionChanged(Message):
    """A transaction record changed; readers refresh caches and live dashboards."""

    message_type: ClassVar[str] = "TransactionChanged"

    transaction_id: str = Field(min_length=1)
    event_id: str = Field(min_length=1)
    change: TransactionChange
    changed_fields: tuple[str, ...] = ()
    changed_at: AwareDatetime

    def default_key(self) -> str:
        """The same change announced twice (a retried write) is one message."""
        return f"{self.transaction_id}/{self.change.value}/{self.changed_at.isoformat()}"


class StripePayoutChanged(Message):
    """Stripe reported a new payout state (webhook); the enricher, owner of the deposit fields, applies it."""

    message_type: ClassVar[str] = "StripePayoutChanged"

    payout_id: str = Field(pattern=r"^po_[A-Za-z0-9_]+$", max_length=255)
    account_id: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9_]+$", max_length=255)
    status: str = Field(min_length=1, max_length=64)
    arrival_date: AwareDatetime | None = None
    automatic: bool = True
    stripe_event_id: str = Field(pattern=r"^evt_[A-Za-z0-9_]+$", max_length=255)
    stripe_event_created: AwareDatetime

    def default_key(self) -> str:
        """One message per Stripe event: a redelivered or re-applied event is dropped as a duplicate."""
        return self.stripe_event_id


class StripeTransferCreated(Message):
    """Stripe made a transfer to a connected account (webhook); the enricher re-routes the charge it paid for.

    A separate transfer may be made hours after its charge was enriched as the platform's.
    """

    message_type: ClassVar[str] = "StripeTransferCreated"

    transfer_id: str = Field(pattern=r"^tr_[A-Za-z0-9_]+$", max_length=255)
    destination_account_id: str = Field(pattern=r"^acct_[A-Za-z0-9_]+$", max_length=255)
    # Stripe ids (`py_...`, `ch_...`); None when Stripe names none (a transfer from the balance).
    destination_payment_id: str | None = Field(
        default=None, pattern=r"^[a-z]+_[A-Za-z0-9_]+$", max_length=255
    )
    source_charge_id: str | None = Field(default=None, pattern=r"^[a-z]+_[A-Za-z0-9_]+$", max_length=255)
    transfer_created: AwareDatetime
    stripe_event_id: str = Field(pattern=r"^evt_[A-Za-z0-9_]+$", max_length=255)

    def default_key(self) -> str:
        """One message per Stripe event: a redelivered or re-applied event is dropped as a duplicate."""
        return self.stripe_event_id


MESSAGE_TYPES: Mapping[str, type[Message]] = {
    cls.message_type: cls
    for cls in (PaymentEnrichmentRequested, TransactionChanged, StripePayoutChanged, StripeTransferCreated)
}

MessageT = TypeVar("MessageT", bound=Message)
# Covariant so an Envelope[PaymentEnrichmentRequested] is accepted where an Envelope[Message] is expected.
MessageT_co = TypeVar("MessageT_co", bound=Message, covariant=True)


class DecodeFailure(StrEnum):
    """Short, stable reasons a message cannot be decoded; used as the dead-letter reason."""

    UNSUPPORTED_CONTENT_TYPE = "UnsupportedContentType"
    INVALID_JSON = "InvalidJson"
    UNKNOWN_MESSAGE_TYPE = "UnknownMessageType"
    UNSUPPORTED_SCHEMA_VERSION = "UnsupportedSchemaVersion"
    INVALID_PAYLOAD = "InvalidPayload"


class MessageDecodeError(Exception):
    """A received message cannot become a typed message; it will never succeed, so it is dead-lettered."""

    def __init__(self, *, reason: DecodeFailure, description: str) -> None:
        super().__init__(f"{reason.value}: {description}")
        self.reason = reason
        # Built from field locations and error kinds only, never from input values (personal data).
        self.description = description


@dataclass(frozen=True, kw_only=True)
class RawMessage:
    """A message as it travels: body bytes and broker-visible metadata, independent of any SDK."""

    body: bytes
    subject: str | None
    message_id: str | None
    content_type: str | None = CONTENT_TYPE
    correlation_id: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Envelope(Generic[MessageT_co]):
    """A typed message with the metadata that travels with it."""

    message: MessageT_co
    message_id: str
    correlation_id: str | None = None
    schema_version: int = 1
    # 1 for the first publish; a consumer that reschedules a retry sends a copy with attempt + 1.
    attempt: int = 1
    trace_context: Mapping[str, str] = field(default_factory=dict)

    @property
    def message_type(self) -> str:
        """The registered type name of the message."""
        return self.message.message_type


def message_id_for(*, message_type: str, key: str) -> str:
    """Derive the same message id from the same (type, key), in every process and every run."""
    return str(uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"{message_type}/{key}"))


def current_trace_context(*, context: Context | None = None) -> dict[str, str]:
    """W3C trace context headers of the current (or given) OpenTelemetry context."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def extract_trace_context(properties: Mapping[str, PropertyValue]) -> Context:
    """OpenTelemetry context to continue the trace a message was published in."""
    carrier: dict[str, str] = {}
    traceparent = properties.get(TRACEPARENT_PROPERTY) or properties.get(DIAGNOSTIC_ID_PROPERTY)
    if isinstance(traceparent, str):
        carrier[TRACEPARENT_PROPERTY] = traceparent
    tracestate = properties.get(TRACESTATE_PROPERTY)
    if isinstance(tracestate, str):
        carrier[TRACESTATE_PROPERTY] = tracestate
    return _PROPAGATOR.extract(carrier)


def make_envelope(
    message: MessageT,
    *,
    key: str | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope[MessageT]:
    """Wrap a message for publishing, with its id and the caller's trace context."""
    if message_id is None:
        key = key if key is not None else message.default_key()
        message_id = (
            str(uuid.uuid4()) if key is None else message_id_for(message_type=message.message_type, key=key)
        )
    if len(message_id) > _MAX_MESSAGE_ID_LENGTH:
        raise ValueError(f"message id longer than {_MAX_MESSAGE_ID_LENGTH} characters")
    return Envelope(
        message=message,
        message_id=message_id,
        correlation_id=correlation_id,
        schema_version=message.schema_version,
        trace_context=current_trace_context(),
    )


def encode_envelope(envelope: Envelope[Message]) -> RawMessage:
    """The wire form of an envelope."""
    properties: dict[str, PropertyValue] = {
        SCHEMA_VERSION_PROPERTY: envelope.schema_version,
        ATTEMPT_PROPERTY: envelope.attempt,
    }
    traceparent = envelope.trace_context.get(TRACEPARENT_PROPERTY)
    if traceparent:
        properties[TRACEPARENT_PROPERTY] = traceparent
        properties[DIAGNOSTIC_ID_PROPERTY] = traceparent
    tracestate = envelope.trace_context.get(TRACESTATE_PROPERTY)
    if tracestate:
        properties[TRACESTATE_PROPERTY] = tracestate
    return RawMessage(
        body=envelope.message.model_dump_json(by_alias=True).encode(),
        subject=envelope.message_type,
        message_id=envelope.message_id,
        content_type=CONTENT_TYPE,
        correlation_id=envelope.correlation_id,
        properties=properties,
    )


def decode_message(raw: RawMessage) -> Envelope[Message]:
    """The typed envelope of a received message; raises MessageDecodeError when it cannot be one."""
    if raw.content_type not in {None, CONTENT_TYPE}:
        raise MessageDecodeError(
            reason=DecodeFailure.UNSUPPORTED_CONTENT_TYPE,
            description=f"content type {raw.content_type[:100]!r}, expected {CONTENT_TYPE}",
        )
    message_class = MESSAGE_TYPES.get(raw.subject or "")
    if message_class is None:
        raise MessageDecodeError(
            reason=DecodeFailure.UNKNOWN_MESSAGE_TYPE,
            description=f"no message type registered for subject {(raw.subject or '')[:100]!r}",
        )
    version = _int_property(raw.properties, SCHEMA_VERSION_PROPERTY)
    if version != message_class.schema_version:
        raise MessageDecodeError(
            reason=DecodeFailure.UNSUPPORTED_SCHEMA_VERSION,
            description=(
                f"{message_class.message_type} schema version {version!r}, "
                f"this reader supports {message_class.schema_version}"
            ),
        )
    try:
        payload = json.loads(raw.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MessageDecodeError(
            reason=DecodeFailure.INVALID_JSON, description=f"body is not UTF-8 JSON ({type(error).__name__})"
        ) from error
    try:
        message = message_class.model_validate(payload)
    except ValidationError as error:
        raise MessageDecodeError(
            reason=DecodeFailure.INVALID_PAYLOAD, description=_describe_validation_error(error)
        ) from error
    trace_context = {
        name: value
        for name in (TRACEPARENT_PROPERTY, TRACESTATE_PROPERTY)
        if isinstance(value := raw.properties.get(name), str)
    }
    if TRACEPARENT_PROPERTY not in trace_context and isinstance(
        diagnostic_id := raw.properties.get(DIAGNOSTIC_ID_PROPERTY), str
    ):
        trace_context[TRACEPARENT_PROPERTY] = diagnostic_id
    return Envelope(
        message=message,
        # A broker always assigns an id; an empty one only comes from hand-built test input.
        message_id=raw.message_id or "",
        correlation_id=raw.correlation_id,
        schema_version=version,
        attempt=_int_property(raw.properties, ATTEMPT_PROPERTY) or 1,
        trace_context=trace_context,
    )


def to_service_bus_message(raw: RawMessage) -> ServiceBusMessage:
    """The SDK message to send for a wire-form message."""
    return ServiceBusMessage(
        raw.body,
        message_id=raw.message_id,
        content_type=raw.content_type,
        correlation_id=raw.correlation_id,
        subject=raw.subject,
        application_properties=_outgoing_properties(raw.properties),
    )


def from_service_bus_message(message: ServiceBusMessage) -> RawMessage:
    """The wire form of an SDK message, sent or received (received ones carry bytes keys and values)."""
    return RawMessage(
        body=_body_bytes(message),
        subject=message.subject,
        message_id=message.message_id,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        properties=_normalize_properties(message.application_properties or {}),
    )


def envelope_to_service_bus_message(envelope: Envelope[Message]) -> ServiceBusMessage:
    """The SDK message to send for an envelope."""
    return to_service_bus_message(encode_envelope(envelope))


def decode_service_bus_message(message: ServiceBusMessage) -> Envelope[Message]:
    """The typed envelope of a received SDK message; raises MessageDecodeError when it cannot be one."""
    return decode_message(from_service_bus_message(message))


def _outgoing_properties(
    properties: Mapping[str, PropertyValue],
) -> dict[str | bytes, int | float | bytes | bool | str | uuid.UUID]:
    return dict(properties.items())


def _body_bytes(message: ServiceBusMessage) -> bytes:
    body = message.body
    if message.body_type is AmqpMessageBodyType.DATA:
        # A data body arrives as a generator of byte sections.
        return b"".join(bytes(section) for section in body)
    # Value and sequence bodies only come from foreign senders. A text value is taken as is; anything
    # else cannot be this format's JSON, and an empty body makes decoding fail (then dead-letter)
    # instead of the receive loop crashing on it.
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return b""


def _normalize_properties(properties: Mapping[str | bytes, Any]) -> dict[str, PropertyValue]:
    normalized: dict[str, PropertyValue] = {}
    for key, value in properties.items():
        name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            normalized[name] = value.decode(errors="replace")
        elif isinstance(value, str | int | float | bool):
            normalized[name] = value
        elif value is not None:
            normalized[name] = str(value)
    return normalized


def _int_property(properties: Mapping[str, PropertyValue], name: str) -> int | None:
    value = properties.get(name)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _describe_validation_error(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in detail['loc']) or '<root>'}: {detail['type']}"
        for detail in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    return f"{error.title}: " + "; ".join(problems)
