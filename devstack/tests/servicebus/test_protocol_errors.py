"""Conformance below the SDK: malformed messages and unknown operations get clear error replies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from urllib.parse import quote_plus, urlencode

import pytest
from proton import Disposition, Message
from proton.utils import BlockingConnection

pytestmark = pytest.mark.integration


def _sas_token(audience: str, key_name: str, key: str) -> str:
    expiry = int(time.time()) + 300
    signed = f"{quote_plus(audience)}\n{expiry}".encode()
    signature = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest())
    return "SharedAccessSignature " + urlencode(
        {"sr": audience, "sig": signature, "se": expiry, "skn": key_name}
    )


def _request(connection, address, operation, body, *, kind=None, name=None):
    suffix = uuid.uuid4().hex  # link names must be unique per connection
    replies = connection.create_receiver(address, credit=5, name=f"replies-{suffix}")
    requests = connection.create_sender(address, name=f"requests-{suffix}")
    properties = {"operation": operation}
    if kind is not None:
        properties |= {"type": kind, "name": name}
    requests.send(Message(id=str(uuid.uuid4()), body=body, properties=properties))
    return replies.receive(timeout=5)


def _exercise(emulator):
    url = f"{emulator.host}:{emulator.port}"
    connection = BlockingConnection(url, timeout=10, allowed_mechs="ANONYMOUS")
    try:
        audience = f"sb://localhost:{emulator.port}/robust"
        token = _sas_token(audience, emulator.key_name, emulator.key)
        results = {}
        put = _request(
            connection,
            "$cbs",
            "put-token",
            token,
            kind="servicebus.windows.net:sastoken",
            name=audience,
        )
        results["put-token"] = put.properties
        bad_put = _request(connection, "$cbs", "put-token", "SharedAccessSignature sr=x&sig=y&se=1&skn=z",
                           kind="servicebus.windows.net:sastoken", name=audience)  # fmt: skip
        results["bad-token"] = bad_put.properties
        unknown = _request(connection, "robust/$management", "com.microsoft:frobnicate", {})
        results["unknown-operation"] = unknown.properties
        not_a_map = _request(connection, "robust/$management", "com.microsoft:peek-message", "not a map")
        results["not-a-map"] = not_a_map.properties
        missing = _request(connection, "robust/$management", "com.microsoft:renew-lock", {})
        results["missing-field"] = missing.properties

        sender = connection.create_sender("robust")
        delivery = sender.link.delivery(b"raw-1")
        sender.link.stream(b"\x01\x02 this is not an AMQP message")
        sender.link.advance()
        connection.wait(lambda: delivery.remote_state != 0, timeout=5)
        results["malformed"] = (delivery.remote_state, delivery.remote.condition.name)
        return results
    finally:
        connection.close()


async def test_bad_requests_get_error_replies_and_the_server_keeps_serving(emulator, client, receive):
    from azure.servicebus import ServiceBusMessage  # noqa: PLC0415

    results = await asyncio.to_thread(_exercise, emulator)
    assert results["put-token"]["status-code"] == 202
    assert results["bad-token"]["status-code"] == 401
    assert results["unknown-operation"]["statusCode"] == 501
    assert results["unknown-operation"]["errorCondition"] == "amqp:not-implemented"
    assert results["not-a-map"]["statusCode"] == 400
    assert "lock-tokens" in results["missing-field"]["statusDescription"]
    assert results["malformed"] == (Disposition.REJECTED, "com.microsoft:argument-error")
    async with client.get_queue_sender("robust") as sender:
        await sender.send_messages(ServiceBusMessage("after bad input"))
    async with client.get_queue_receiver("robust") as receiver:
        [message] = await receive(receiver, 1)
        assert str(message) == "after bad input"
        await receiver.complete_message(message)
