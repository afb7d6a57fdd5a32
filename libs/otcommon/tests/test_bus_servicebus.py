import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpMessageHeader
from azure.servicebus.exceptions import MessageAlreadySettled, MessageLockLostError, ServiceBusConnectionError

from otcommon.bus import (
    ServiceBusReceived,
    ServiceBusSource,
    SettlementError,
    client_from_connection_string,
    client_from_namespace,
)
from otcommon.messages import (
    PaymentEnrichmentRequested,
    RawMessage,
    decode_service_bus_message,
    envelope_to_service_bus_message,
    make_envelope,
)

EMULATOR = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"


def received(*, prior_deliveries=0):
    envelope = make_envelope(
        PaymentEnrichmentRequested(
            payment_id="pi_1",
            transaction_id="txn-1",
            event_id="evt-1",
            requested_at=datetime(2026, 3, 1, tzinfo=UTC),
        )
    )
    message = envelope_to_service_bus_message(envelope)
    message.raw_amqp_message.header = AmqpMessageHeader(delivery_count=prior_deliveries)
    payload = bytearray()
    encode_payload(payload, PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message))
    return ServiceBusReceivedMessage.from_bytes(bytes(payload))


class FakeReceiver:
    def __init__(self, *, fail_with=None, messages=()):
        self.fail_with = fail_with
        self.messages = list(messages)
        self.calls = []
        self.closed = False

    async def __aenter__(self):
        self.calls.append(("open",))
        return self

    async def receive_messages(self, *, max_message_count, max_wait_time):
        self.calls.append(("receive", max_message_count, max_wait_time))
        return self.messages[:max_message_count]

    async def _settle(self, action, message, **details):
        self.calls.append((action, message.message_id, details))
        if self.fail_with is not None:
            raise self.fail_with

    async def complete_message(self, message):
        await self._settle("complete", message)

    async def abandon_message(self, message):
        await self._settle("abandon", message)

    async def dead_letter_message(self, message, reason=None, error_description=None):
        await self._settle("dead_letter", message, reason=reason, error_description=error_description)

    async def close(self):
        self.closed = True


class FakeScheduler:
    def __init__(self, *, fail_with=None):
        self.fail_with = fail_with
        self.scheduled: list[tuple[ServiceBusMessage, datetime]] = []
        self.closed = False

    async def schedule_messages(self, messages, schedule_time_utc):
        if self.fail_with is not None:
            raise self.fail_with
        self.scheduled.append((messages, schedule_time_utc))
        return [1]

    async def close(self):
        self.closed = True


def adapter(message, *, receiver=None, scheduler=None):
    return ServiceBusReceived(
        message=message, receiver=receiver or FakeReceiver(), scheduler=scheduler or FakeScheduler()
    )


def test_delivery_count_counts_this_delivery():
    # The SDK reports the AMQP header, which counts earlier deliveries only.
    assert adapter(received(prior_deliveries=0)).delivery_count == 1
    assert adapter(received(prior_deliveries=2)).delivery_count == 3


def test_raw_form_decodes_to_the_sent_message():
    message = received()

    assert adapter(message).raw.message_id == message.message_id
    assert adapter(message).raw.properties["schemaVersion"] == 1
    assert decode_service_bus_message(message).message.payment_id == "pi_1"


async def test_settle_operations_reach_the_receiver():
    message = received()
    receiver = FakeReceiver()
    handle = adapter(message, receiver=receiver)

    await handle.complete()
    await handle.abandon()
    await handle.dead_letter(reason="PaymentNotFound", description="no account")

    assert receiver.calls == [
        ("complete", message.message_id, {}),
        ("abandon", message.message_id, {}),
        ("dead_letter", message.message_id, {"reason": "PaymentNotFound", "error_description": "no account"}),
    ]


@pytest.mark.parametrize(
    "error",
    [MessageLockLostError(), MessageAlreadySettled(action="complete"), ServiceBusConnectionError()],
    ids=["lock-lost", "already-settled", "connection"],
)
async def test_settlement_failures_surface_as_settlement_error(error):
    handle = adapter(received(), receiver=FakeReceiver(fail_with=error))

    with pytest.raises(SettlementError):
        await handle.complete()
    with pytest.raises(SettlementError):
        await handle.dead_letter(reason="r", description="d")


async def test_reschedule_schedules_the_copy_then_completes_the_original():
    message = received()
    receiver = FakeReceiver()
    scheduler = FakeScheduler()
    copy = RawMessage(
        body=b"{}", subject="PaymentEnrichmentRequested", message_id="retry-1", properties={"attempt": 2}
    )
    before = datetime.now(UTC)

    await adapter(message, receiver=receiver, scheduler=scheduler).reschedule(copy=copy, delay_seconds=60)

    [(scheduled, at)] = scheduler.scheduled
    assert scheduled.message_id == "retry-1"
    assert scheduled.application_properties == {"attempt": 2}
    assert before + timedelta(seconds=59) < at < datetime.now(UTC) + timedelta(seconds=61)
    assert receiver.calls == [("complete", message.message_id, {})]


async def test_failed_reschedule_abandons_the_original_so_it_is_not_lost():
    message = received()
    receiver = FakeReceiver()
    copy = RawMessage(body=b"{}", subject="T", message_id="retry-1")

    with pytest.raises(SettlementError, match="abandoned"):
        await adapter(
            message, receiver=receiver, scheduler=FakeScheduler(fail_with=ServiceBusConnectionError())
        ).reschedule(copy=copy, delay_seconds=1)

    assert receiver.calls == [("abandon", message.message_id, {})]


class FakeRenewer:
    def __init__(self):
        self.registered = []
        self.closed = False

    def register(self, receiver, message):
        self.registered.append((receiver, message.message_id))

    async def close(self):
        self.closed = True


def locked_for(seconds):
    message = received()
    message._expiry = datetime.now(UTC) + timedelta(seconds=seconds)  # the broker's lock, as the SDK reads it
    return message


async def test_a_lock_is_renewed_from_the_lead_before_it_expires_not_from_the_receive():
    # Thousands of messages in flight each cost the SDK's renewer a task polling every second; a
    # message settled long before its lock needs renewing should cost it nothing.
    held, settled_early = locked_for(0.4), locked_for(0.4)
    receiver = FakeReceiver(messages=[held, settled_early])
    renewer = FakeRenewer()
    source = ServiceBusSource(
        receiver=receiver, scheduler=FakeScheduler(), renewer=renewer, renewal_lead_seconds=0.2
    )

    first, second = await source.receive(max_messages=2, max_wait_seconds=1)
    assert renewer.registered == []  # 0.4 s of lock left, more than the lead
    await second.complete()
    await asyncio.sleep(0.3)  # the lead is reached

    assert renewer.registered == [(receiver, held.message_id)]  # the settled one never
    await first.complete()
    await source.close()


async def test_a_lock_already_within_the_lead_is_renewed_at_once():
    message = locked_for(5)
    receiver = FakeReceiver(messages=[message])
    renewer = FakeRenewer()
    source = ServiceBusSource(receiver=receiver, scheduler=FakeScheduler(), renewer=renewer)

    await source.receive(max_messages=1, max_wait_seconds=1)  # the default lead: 20 s

    assert renewer.registered == [(receiver, message.message_id)]
    await source.close()


async def test_closing_the_source_hands_no_more_locks_to_the_renewer():
    message = locked_for(0.3)
    renewer = FakeRenewer()
    source = ServiceBusSource(
        receiver=FakeReceiver(messages=[message]),
        scheduler=FakeScheduler(),
        renewer=renewer,
        renewal_lead_seconds=0.2,
    )

    await source.receive(max_messages=1, max_wait_seconds=1)
    await source.close()
    await asyncio.sleep(0.2)

    assert renewer.registered == []
    assert renewer.closed


async def test_source_receives_at_most_what_is_asked_and_closes_everything():
    messages = [received(), received()]
    receiver = FakeReceiver(messages=messages)
    scheduler = FakeScheduler()
    renewer = FakeRenewer()
    source = ServiceBusSource(receiver=receiver, scheduler=scheduler, renewer=renewer)

    got = await source.receive(max_messages=1, max_wait_seconds=2.5)
    await source.receive(max_messages=2, max_wait_seconds=2.5)
    await source.close()

    assert [handle.raw.message_id for handle in got] == [messages[0].message_id]
    # Opened once, before the first receive, so the short receive wait does not bound the link opening.
    assert receiver.calls == [("open",), ("receive", 1, 2.5), ("receive", 2, 2.5)]
    assert renewer.closed
    assert receiver.closed
    assert scheduler.closed


async def test_emulator_connection_string_builds_a_plain_amqp_client():
    client = client_from_connection_string(connection_string=EMULATOR)
    try:
        assert isinstance(client, ServiceBusClient)
        assert client.fully_qualified_namespace == "localhost"
        assert client._config.use_tls is False
    finally:
        await client.close()


class NoTokens:
    async def get_token(self, *_scopes, **_kwargs):
        raise AssertionError("no connection is made while building the client")

    async def close(self):
        pass


async def test_namespace_client_uses_the_given_credential():
    credential = NoTokens()
    client = client_from_namespace(
        fully_qualified_namespace="ot-prod.servicebus.windows.net", credential=credential
    )
    try:
        assert client.fully_qualified_namespace == "ot-prod.servicebus.windows.net"
        assert client._credential is credential
        assert client._config.use_tls is True
    finally:
        await client.close()
