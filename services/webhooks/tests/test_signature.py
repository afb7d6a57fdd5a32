"""Deliveries signed as Stripe signs them: which are accepted, which refused and why."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from stripe_fixtures import CONNECT_SECRET, PLATFORM_SECRET, event, fixture, sign
from structlog.testing import capture_logs
from webhooks_fakes import OLD_PLATFORM_SECRET, build_service

from otcommon.http import PROBLEM_CONTENT_TYPE
from webhooks.signature import Rejection, SignatureRejectedError, SignatureVerifier

PATH = "/api/webhooks/stripe"


def refund_body() -> str:
    return json.dumps(event("refund.created", fixture("refund")))


async def post(settings, body: str | bytes, headers: dict[str, str]):
    async with TestClient(TestServer(build_service(settings).app())) as client:
        response = await client.post(PATH, data=body, headers=headers)
        return response.status, response.content_type, await response.json()


@pytest.mark.parametrize(
    "secret", [PLATFORM_SECRET, OLD_PLATFORM_SECRET, CONNECT_SECRET], ids=["platform", "rotated", "connect"]
)
async def test_a_delivery_signed_with_any_valid_secret_is_accepted(settings, secret):
    body = refund_body()
    status, _, answer = await post(settings, body, {"Stripe-Signature": sign(body, secret)})
    assert status == 200
    assert answer["received"] == "evt_test000001"


def multi_v1_header(body: str, *secrets: str) -> str:
    """Stripe signs with every secret of a rolling endpoint: one t=, several v1=."""
    when = int(time.time())
    signatures = [sign(body, secret, timestamp=when).split(",", 1)[1] for secret in secrets]
    return ",".join([f"t={when}", *signatures])


async def test_a_header_with_several_v1_signatures_passes_when_one_matches(settings):
    body = refund_body()
    header = multi_v1_header(body, "whsec_unknown", PLATFORM_SECRET)
    status, _, _ = await post(settings, body, {"Stripe-Signature": header})
    assert status == 200


def stale(body: str) -> str:
    return sign(body, timestamp=int(time.time()) - 301)


def future(body: str) -> str:
    return sign(body, timestamp=int(time.time()) + 3600)


@pytest.mark.parametrize(
    ("make_header", "tamper", "reason"),
    [
        (lambda body: sign(body, "whsec_wrong"), False, Rejection.NO_MATCH),
        (sign, True, Rejection.NO_MATCH),
        (stale, False, Rejection.STALE_TIMESTAMP),
        (future, False, Rejection.STALE_TIMESTAMP),
        (lambda _: None, False, Rejection.MISSING_HEADER),
        (lambda _: "garbage", False, Rejection.MALFORMED_HEADER),
        (lambda _: f"t={int(time.time())},v0=abc", False, Rejection.MALFORMED_HEADER),
    ],
    ids=["wrong-secret", "tampered-body", "expired", "future", "missing", "garbage", "no-v1"],
)
async def test_an_unproven_delivery_is_a_400_problem_naming_the_reason(settings, make_header, tamper, reason):
    body = refund_body()
    header = make_header(body)
    sent = body.replace('"amount": 100', '"amount": 100000') if tamper else body
    assert sent != body or not tamper
    status, content_type, problem = await post(settings, sent, {"Stripe-Signature": header} if header else {})
    assert status == 400
    assert content_type == PROBLEM_CONTENT_TYPE
    assert problem["detail"] == reason.value
    assert problem["type"].endswith("/invalid-signature")


async def test_a_signed_body_that_is_not_json_is_a_400(settings):
    body = '{"id": "evt_1", "object": "event",'
    status, _, problem = await post(settings, body, {"Stripe-Signature": sign(body)})
    assert status == 400
    assert problem["type"].endswith("/invalid-event")
    assert "not JSON" in problem["detail"]


async def test_a_body_that_is_not_utf8_is_refused_not_crashed(settings):
    body = b"\xff\xfe{}"
    header = sign("x")
    status, _, problem = await post(settings, body, {"Stripe-Signature": header})
    assert status == 400
    assert problem["detail"] == Rejection.NOT_UTF8.value


async def test_an_event_of_the_wrong_mode_is_refused(settings):
    body = json.dumps(event("refund.created", fixture("refund"), livemode=True))
    status, _, problem = await post(settings, body, {"Stripe-Signature": sign(body)})
    assert status == 400
    assert "livemode" in problem["detail"]


async def test_an_oversized_body_is_a_413(settings):
    body = json.dumps(event("refund.created", fixture("refund", metadata={"pad": "x" * 300_000})))
    status, _, problem = await post(settings, body, {"Stripe-Signature": sign(body)})
    assert status == 413
    assert problem["status"] == 413


def test_the_future_check_uses_the_verifiers_clock():
    body = refund_body()
    header = sign(body, timestamp=int(time.time()))
    verifier = SignatureVerifier([PLATFORM_SECRET], tolerance_seconds=300, clock=lambda: time.time() - 3600)
    with pytest.raises(SignatureRejectedError) as caught:
        verifier.verify(body.encode(), header)
    assert caught.value.rejection is Rejection.STALE_TIMESTAMP


def test_a_verifier_needs_a_secret():
    with pytest.raises(ValueError, match="signing secret"):
        SignatureVerifier([])


async def test_a_refusal_is_logged_with_its_reason_and_without_the_body_or_header(settings):
    body = json.dumps(event("refund.created", fixture("refund", metadata={"email": "buyer@example.com"})))
    header = sign(body, "whsec_wrong")
    with capture_logs() as logs:
        status, _, _ = await post(settings, body, {"Stripe-Signature": header})
    assert status == 400
    [refusal] = [entry for entry in logs if entry["event"] == "webhook refused"]
    assert refusal["reason"] == "NO_MATCH"
    assert refusal["size"] == len(body.encode())
    logged = repr(logs)
    assert "buyer@example.com" not in logged
    assert header.split("v1=")[1] not in logged


async def test_once_the_rotation_ends_the_old_secret_is_refused(settings):
    # The rotation is over: only the new platform secret is configured.
    rotated = settings.model_copy(update={"webhooks_platform_secrets": SecretStr(PLATFORM_SECRET)})
    body = refund_body()
    status, _, problem = await post(rotated, body, {"Stripe-Signature": sign(body, OLD_PLATFORM_SECRET)})
    assert status == 400
    assert problem["detail"] == Rejection.NO_MATCH.value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "malformed"),
        (json.dumps(event("refund.created", fixture("refund"), livemode=True)), "wrong-mode"),
    ],
    ids=["malformed", "wrong-mode"],
)
async def test_a_signed_but_unacceptable_delivery_is_logged_with_its_reason_and_size_only(
    settings, body, reason
):
    with capture_logs() as logs:
        status, _, _ = await post(settings, body, {"Stripe-Signature": sign(body)})
    assert status == 400
    [refusal] = [entry for entry in logs if entry["event"] == "webhook refused"]
    assert (refusal["reason"], refusal["size"]) == (reason, len(body.encode()))
    assert "not json at all" not in repr(logs)
    assert fixture("refund")["id"] not in repr(logs)
