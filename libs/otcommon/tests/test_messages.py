from datetime import UTC, datetime

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpAnnotatedMessage
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from otcommon.messages import (
    ATTEMPT_PROPERTY,
    CONTENT_TYPE,
    DIAGNOSTIC_ID_PROPERTY,
    MESSAGE_TYPES,
    SCHEMA_VERSION_PROPERTY,
    TRACEPARENT_PROPERTY,
    DecodeFailure,
    EnrichmentReason,
    MessageDecodeError,
    PaymentEnrichmentRequested,
    RawMessage,
    StripePayoutChanged,
    StripeTransferCreated,
    TransactionChange,
    TransactionChanged,
    decode_message,
    decode_service_bus_message,
    encode_envelope,
    envelope_to_service_bus_message,
    extract_trace_context,
    from_service_bus_message,
    make_envelope,
    message_id_for,
)

REQUESTED_AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

# A test-only tracer provider: the global one is left alone so other tests see the default.
_provider = TracerProvider()
_tracer = _provider.get_tracer("test_messages")


def enrichment(**overrides):
    fields = {
        "payment_id": "pi_3Abc123",
        "transaction_id": "txn-1",
        "event_id": "evt-1",
        "requested_at": REQUESTED_AT,
    }
    return PaymentEnrichmentRequested(**(fields | overrides))


def changed(**overrides):
    fields = {
        "transaction_id": "txn-1",
        "event_id": "evt-1",
        "change": TransactionChange.REFUNDED,
        "changed_fields": ("IsRefunded", "RefundedRemarks"),
        "changed_at": REQUESTED_AT,
    }
    return TransactionChanged(**(fields | overrides))


def as_received(message: ServiceBusMessage) -> ServiceBusReceivedMessage:
    """What a receiver hands over: the message encoded to AMQP bytes and decoded back by the SDK."""
    payload = bytearray()
    encode_payload(payload, PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message))
    return ServiceBusReceivedMessage.from_bytes(bytes(payload))


def test_registry_maps_type_names_to_classes():
    assert dict(MESSAGE_TYPES) == {
        "PaymentEnrichmentRequested": PaymentEnrichmentRequested,
        "TransactionChanged": TransactionChanged,
        "StripePayoutChanged": StripePayoutChanged,
        "StripeTransferCreated": StripeTransferCreated,
    }


def transfer_created() -> StripeTransferCreated:
    return StripeTransferCreated(
        transfer_id="tr_1late",
        destination_account_id="acct_1organizer",
        destination_payment_id="py_1arrived",
        source_charge_id="ch_1charged",
        transfer_created=REQUESTED_AT,
        stripe_event_id="evt_1made",
    )


@pytest.mark.parametrize(
    "message", [enrichment(), changed(), transfer_created()], ids=["enrichment", "changed", "transfer"]
)
def test_round_trip_through_a_received_service_bus_message(message):
    envelope = make_envelope(message, correlation_id="run-7")

    sent = envelope_to_service_bus_message(envelope)
    received = as_received(sent)
    decoded = decode_service_bus_message(received)

    assert decoded.message == message
    assert type(decoded.message) is type(message)
    assert decoded.message_id == envelope.message_id
    assert decoded.correlation_id == "run-7"
    assert decoded.schema_version == 1
    assert decoded.attempt == 1
    assert received.subject == message.message_type
    assert received.content_type == CONTENT_TYPE


def test_sent_message_carries_metadata_in_standard_places():
    envelope = make_envelope(enrichment(), correlation_id="run-7")

    sent = envelope_to_service_bus_message(envelope)

    assert sent.subject == "PaymentEnrichmentRequested"
    assert sent.content_type == "application/json"
    assert sent.message_id == envelope.message_id
    assert sent.correlation_id == "run-7"
    assert sent.application_properties[SCHEMA_VERSION_PROPERTY] == 1
    assert sent.application_properties[ATTEMPT_PROPERTY] == 1


def test_body_is_camel_case_json():
    raw = encode_envelope(make_envelope(changed()))

    assert raw.body.startswith(b"{")
    assert b'"transactionId":"txn-1"' in raw.body
    assert b'"changedFields":["IsRefunded","RefundedRemarks"]' in raw.body
    assert b'"changedAt":"2026-03-01T12:30:00Z"' in raw.body


def test_enrichment_message_id_is_derived_from_the_payment_and_the_order():
    first = make_envelope(enrichment())
    again = make_envelope(enrichment(requested_at=datetime(2026, 3, 2, tzinfo=UTC)))
    second_order = make_envelope(enrichment(transaction_id="txn-2"))
    other = make_envelope(enrichment(payment_id="ch_3Other"))

    assert first.message_id == again.message_id
    assert first.message_id == message_id_for(
        message_type="PaymentEnrichmentRequested", key="pi_3Abc123/txn-1"
    )
    assert second_order.message_id != first.message_id  # not dropped as a duplicate of the first order's
    assert other.message_id != first.message_id


def test_requeue_is_not_swallowed_by_duplicate_detection():
    new = make_envelope(enrichment())
    requeue = make_envelope(enrichment(reason=EnrichmentReason.REQUEUE))
    later_requeue = make_envelope(
        enrichment(reason=EnrichmentReason.REQUEUE, requested_at=datetime(2026, 3, 2, tzinfo=UTC))
    )

    assert len({new.message_id, requeue.message_id, later_requeue.message_id}) == 3


def test_caller_key_and_explicit_id_win_over_the_default():
    keyed = make_envelope(changed(), key="stripe-evt_1")

    assert keyed.message_id == message_id_for(message_type="TransactionChanged", key="stripe-evt_1")
    assert make_envelope(changed(), message_id="fixed-id").message_id == "fixed-id"
    with pytest.raises(ValueError, match="128"):
        make_envelope(changed(), message_id="x" * 129)


def test_same_change_announced_twice_gets_the_same_id():
    assert make_envelope(changed()).message_id == make_envelope(changed()).message_id
    assert make_envelope(changed()).message_id != make_envelope(changed(change="disputed")).message_id


def test_payment_id_must_be_a_stripe_payment_or_charge():
    assert enrichment(payment_id="ch_1x").payment_id == "ch_1x"
    with pytest.raises(ValidationError):
        enrichment(payment_id="po_123")


def test_messages_reject_naive_timestamps():
    with pytest.raises(ValidationError):
        enrichment(requested_at=datetime(2026, 3, 1, 12, 30))  # noqa: DTZ001


def test_trace_context_is_injected_and_the_consumer_continues_the_trace():
    with _tracer.start_as_current_span("publish") as span:
        envelope = make_envelope(enrichment())
    publisher_context = span.get_span_context()

    received = as_received(envelope_to_service_bus_message(envelope))
    raw = from_service_bus_message(received)
    traceparent = raw.properties[TRACEPARENT_PROPERTY]

    assert traceparent == (
        f"00-{publisher_context.trace_id:032x}-{publisher_context.span_id:016x}"
        f"-{int(publisher_context.trace_flags):02x}"
    )
    assert raw.properties[DIAGNOSTIC_ID_PROPERTY] == traceparent
    with _tracer.start_as_current_span("process", context=extract_trace_context(raw.properties)) as child:
        assert child.get_span_context().trace_id == publisher_context.trace_id
        assert child.parent is not None
        assert child.parent.span_id == publisher_context.span_id
    assert decode_message(raw).trace_context[TRACEPARENT_PROPERTY] == traceparent


def test_without_an_active_span_no_trace_context_is_sent():
    raw = encode_envelope(make_envelope(enrichment()))

    assert TRACEPARENT_PROPERTY not in raw.properties
    assert DIAGNOSTIC_ID_PROPERTY not in raw.properties
    assert not trace.get_current_span(extract_trace_context(raw.properties)).get_span_context().is_valid


def test_diagnostic_id_alone_still_continues_the_trace():
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    context = extract_trace_context({DIAGNOSTIC_ID_PROPERTY: traceparent})

    assert trace.get_current_span(context).get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def valid_raw(**overrides):
    raw = encode_envelope(make_envelope(enrichment()))
    fields = {
        "body": raw.body,
        "subject": raw.subject,
        "message_id": raw.message_id,
        "content_type": raw.content_type,
        "properties": dict(raw.properties),
    }
    return RawMessage(**(fields | overrides))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (valid_raw(body=b'{"paymentId": "pi_1"'), DecodeFailure.INVALID_JSON),
        (valid_raw(body=b"\xff\xfe"), DecodeFailure.INVALID_JSON),
        (valid_raw(subject="RefundIssued"), DecodeFailure.UNKNOWN_MESSAGE_TYPE),
        (valid_raw(subject=None), DecodeFailure.UNKNOWN_MESSAGE_TYPE),
        (valid_raw(properties={SCHEMA_VERSION_PROPERTY: 2}), DecodeFailure.UNSUPPORTED_SCHEMA_VERSION),
        (valid_raw(properties={}), DecodeFailure.UNSUPPORTED_SCHEMA_VERSION),
        (valid_raw(body=b'{"paymentId": "pi_1"}'), DecodeFailure.INVALID_PAYLOAD),
        (valid_raw(body=b"[]"), DecodeFailure.INVALID_PAYLOAD),
        (valid_raw(content_type="application/xml"), DecodeFailure.UNSUPPORTED_CONTENT_TYPE),
    ],
    ids=[
        "truncated-json",
        "not-utf8",
        "unknown-subject",
        "no-subject",
        "future-version",
        "no-version",
        "missing-fields",
        "not-an-object",
        "wrong-content-type",
    ],
)
def test_undecodable_messages_raise_the_typed_error_with_its_reason(raw, reason):
    with pytest.raises(MessageDecodeError) as caught:
        decode_message(raw)

    assert caught.value.reason is reason
    assert caught.value.description


def test_validation_failure_description_names_fields_but_not_values():
    body = b'{"paymentId": "pi_1", "transactionId": "jane.doe@example.com", "eventId": "e",'
    body += b' "requestedAt": "2026-03-01T12:30:00Z", "reason": "new", "email": "jane.doe@example.com"}'

    with pytest.raises(MessageDecodeError) as caught:
        decode_message(valid_raw(body=body))

    assert caught.value.reason is DecodeFailure.INVALID_PAYLOAD
    assert "email: extra_forbidden" in caught.value.description
    assert "jane.doe" not in caught.value.description


def test_decode_accepts_properties_as_a_received_message_reports_them():
    received = as_received(envelope_to_service_bus_message(make_envelope(enrichment())))

    # Received properties come back with bytes keys and values; decoding must not depend on the form.
    assert b"schemaVersion" in (received.application_properties or {})
    assert decode_service_bus_message(received).message == enrichment()


@pytest.mark.parametrize(
    "body",
    [{"value_body": {"paymentId": "pi_1"}}, {"sequence_body": [["a", "b"]]}],
    ids=["value", "sequence"],
)
def test_a_foreign_amqp_body_is_a_decode_error_not_a_crash(body):
    annotated = AmqpAnnotatedMessage(
        **body,
        properties={"subject": "PaymentEnrichmentRequested", "content_type": CONTENT_TYPE},
        application_properties={SCHEMA_VERSION_PROPERTY: 1},
    )
    payload = bytearray()
    encode_payload(payload, PyamqpTransport.to_outgoing_amqp_message(annotated))
    received = ServiceBusReceivedMessage.from_bytes(bytes(payload))

    with pytest.raises(MessageDecodeError) as caught:
        decode_service_bus_message(received)

    assert caught.value.reason is DecodeFailure.INVALID_JSON


def test_attempt_property_is_read_back():
    raw = valid_raw(properties={SCHEMA_VERSION_PROPERTY: 1, ATTEMPT_PROPERTY: 3})

    assert decode_message(raw).attempt == 3


@settings(max_examples=50, deadline=None)
@given(
    payment_id=st.from_regex(r"\A(pi|ch)_[A-Za-z0-9]{1,40}\Z"),
    transaction_id=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1)
    .map(str.strip)
    .filter(bool),
    requested_at=st.datetimes(timezones=st.just(UTC)),
    reason=st.sampled_from(EnrichmentReason),
)
def test_any_valid_request_survives_the_trip_through_service_bus(
    payment_id, transaction_id, requested_at, reason
):
    message = PaymentEnrichmentRequested(
        payment_id=payment_id,
        transaction_id=transaction_id,
        event_id="evt-1",
        requested_at=requested_at,
        reason=reason,
    )
    envelope = make_envelope(message)

    decoded = decode_service_bus_message(as_received(envelope_to_service_bus_message(envelope)))

    assert decoded.message == message
    assert decoded.message_id == envelope.message_id
