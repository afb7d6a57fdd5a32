"""Unit tests: SAS token checks (no server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, quote_plus, urlencode

import pytest

from devstack.servicebus.auth import SharedAccessKey, grants, verify_token
from devstack.servicebus.errors import UnauthorizedError

RULE = SharedAccessKey("RootManageSharedAccessKey", "secret-key")
NOW = 1_800_000_000


def _token(audience, *, key="secret-key", key_name="RootManageSharedAccessKey", expiry=NOW + 3600):
    signed = f"{quote_plus(audience)}\n{expiry}".encode()
    signature = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest())
    return "SharedAccessSignature " + urlencode(
        {"sr": audience, "sig": signature, "se": expiry, "skn": key_name}
    )


def test_valid_token_grants_its_audience_path():
    assert verify_token(_token("sb://localhost:5672/Orders"), rule=RULE, now=NOW) == "orders"
    assert verify_token(_token("sb://localhost:5672"), rule=RULE, now=NOW) == ""


def test_token_signed_over_the_resource_as_written_is_accepted():
    # The SDK's SAS-credential sample signs the resource without URL-encoding and writes it so in `sr`.
    audience = "sb://localhost:5672/orders"
    signed = f"{audience}\n{NOW + 60}".encode()
    signature = quote(base64.b64encode(hmac.new(b"secret-key", signed, hashlib.sha256).digest()))
    token = f"SharedAccessSignature sr={audience}&sig={signature}&se={NOW + 60}&skn=RootManageSharedAccessKey"
    assert verify_token(token, rule=RULE, now=NOW) == "orders"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (_token("sb://localhost/q", key="wrong"), "invalid signature"),
        (_token("sb://localhost/q", key_name="Other"), "unknown authorization rule"),
        (_token("sb://localhost/q", expiry=NOW - 1), "expired"),
        ("Bearer abc", "not a SharedAccessSignature"),
        ("SharedAccessSignature sr=x&sig=y", "missing se, skn"),
        ("SharedAccessSignature sr=x&sig=y&se=soon&skn=RootManageSharedAccessKey", "not a number"),
    ],
)
def test_bad_tokens_are_refused(token, message):
    with pytest.raises(UnauthorizedError, match=f"(?i){message}"):
        verify_token(token, rule=RULE, now=NOW)


def test_audience_covers_itself_and_what_lies_below():
    assert grants({"orders"}, "orders")
    assert grants({"orders"}, "orders/$management")
    assert grants({"orders"}, "Orders/$deadletterqueue")
    assert grants({""}, "anything")
    assert not grants({"orders"}, "orders-archive")
    assert not grants(set(), "orders")
