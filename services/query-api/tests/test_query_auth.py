"""Bearer JWTs: refused when missing, expired, wrongly signed or meant for someone else; scoped to events."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from query_api_support import AUDIENCE, ISSUER, SECRET, bearer, serving, settings, token
from query_documents import transaction

from otcommon.http import PROBLEM_TYPE_BASE
from query_api.auth import PublishedKeys

DOCUMENTS = [
    transaction(1, event="ev1", Email="shared@example.com", TotalAmount=10.0),
    transaction(2, event="ev2", Email="shared@example.com", TotalAmount=20.0),
    transaction(3, event="ev2", Email="only-ev2@example.com", TotalAmount=40.0),
    transaction(4, event="ev3", Email="only-ev3@example.com", TotalAmount=80.0),
]


async def assert_refused(client, headers, *, error: str | None = "invalid_token", detail: str = "") -> None:
    response = await client.get("/api/analytics", headers=headers)
    assert response.status == 401
    problem = await response.json()
    assert problem["type"] == PROBLEM_TYPE_BASE + "unauthorized"
    assert detail in problem["detail"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="query-api"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge


async def test_missing_expired_badly_signed_and_misdirected_tokens_are_refused():
    async with serving(DOCUMENTS) as client:
        await assert_refused(client, {}, error=None)
        await assert_refused(client, {"Authorization": "Basic dXNlcjpwYXNz"}, error=None)
        await assert_refused(client, bearer("not-a-jwt"), detail="not a valid JWT")
        expired = token(now=time.time() - 7200, lifetime_seconds=3600)
        await assert_refused(client, bearer(expired), detail="expired")
        wrongly_signed = token(secret="another-secret-that-is-at-least-32-bytes")
        await assert_refused(client, bearer(wrongly_signed), detail="signature")
        await assert_refused(client, bearer(token(query_api_jwt_audience="someone-else")), detail="aud")
        await assert_refused(client, bearer(token(query_api_jwt_issuer="https://evil.example")), detail="iss")
        unsigned = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60}, None, algorithm="none"
        )
        await assert_refused(client, bearer(unsigned), detail="'none' are not accepted")
        no_expiry = jwt.encode({"iss": ISSUER, "aud": AUDIENCE}, SECRET, algorithm="HS256")
        await assert_refused(client, bearer(no_expiry), detail="'exp'")
        bad_scope = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60, "events": "ev1"},
            SECRET,
            algorithm="HS256",
        )
        await assert_refused(client, bearer(bad_scope), detail="list of event ids")

        assert (await client.get("/api/analytics", headers=bearer(token()))).status == 200


async def test_every_data_endpoint_needs_a_token_and_the_public_ones_do_not():
    async with serving(DOCUMENTS) as client:
        for path in (
            "/api/analytics",
            "/api/transactions",
            "/api/transactions/tx1",
            "/api/customers",
            "/api/customers/x",
            "/api/events",
        ):
            assert (await client.get(path)).status == 401, path
        for path in ("/api/openapi.json", "/healthz", "/readyz"):
            assert (await client.get(path)).status == 200, path


async def get_json(client, path, headers):
    response = await client.get(path, headers=headers)
    assert response.status == 200, path
    return await response.json()


async def test_a_scoped_token_never_sees_other_events_through_any_endpoint():
    scoped = bearer(token(events=["ev1", "ev2"]))
    async with serving(DOCUMENTS) as client:
        analytics = await get_json(client, "/api/analytics?include=events,sources,timeSeries", scoped)
        assert (analytics["ordersCount"], analytics["grossRevenue"]) == (3, 70.0)
        assert {row["key"] for row in analytics["byEvent"]} == {"ev1", "ev2"}
        asked_for_other = await get_json(client, "/api/analytics?eventId=ev3", scoped)
        assert asked_for_other["ordersCount"] == 0

        transactions = await get_json(client, "/api/transactions?pageSize=500", scoped)
        assert {row["eventId"] for row in transactions["rows"]} == {"ev1", "ev2"}
        assert transactions["total"] == 3
        assert (await client.get("/api/transactions/tx4", headers=scoped)).status == 404
        assert (await get_json(client, "/api/transactions/tx1", scoped))["eventId"] == "ev1"

        everyone = await get_json(client, "/api/customers?pageSize=500", bearer(token()))
        ids = {row["email"]: row["id"] for row in everyone["rows"]}
        customers = await get_json(client, "/api/customers?pageSize=500", scoped)
        assert {row["email"] for row in customers["rows"]} == {"shared@example.com", "only-ev2@example.com"}
        assert (
            await client.get(f"/api/customers/{ids['only-ev3@example.com']}", headers=scoped)
        ).status == 404

        only_ev1 = bearer(token(events=["ev1"]))
        shared = await get_json(client, f"/api/customers/{ids['shared@example.com']}", only_ev1)
        assert [row["id"] for row in shared["transactions"]] == ["tx1"]
        assert (shared["customer"]["events"], shared["customer"]["orders"]) == (["ev1"], 1)

        events = await get_json(client, "/api/events", scoped)
        assert [event["eventId"] for event in events["events"]] == ["ev1", "ev2"]

        nothing = bearer(token(events=[]))
        assert (await get_json(client, "/api/analytics", nothing))["ordersCount"] == 0
        assert (await get_json(client, "/api/transactions", nothing))["rows"] == []
        assert (await get_json(client, "/api/events", nothing))["events"] == []


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict:
    return {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def rs256_token(key: rsa.RSAPrivateKey, kid: str, **claims) -> str:
    payload = {"iss": "https://login.example/tenant/v2.0", "aud": "api://query", "exp": time.time() + 600}
    return jwt.encode({**payload, **claims}, key, algorithm="RS256", headers={"kid": kid})


@contextlib.asynccontextmanager
async def identity_provider(published: dict):
    """A JWKS endpoint over loopback HTTP whose keys a test can rotate."""
    requests = []

    async def jwks(_: web.Request) -> web.Response:
        requests.append(1)
        return web.json_response({"keys": list(published.values())})

    app = web.Application()
    app.router.add_get("/discovery/v2.0/keys", jwks)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/discovery/v2.0/keys")), requests


async def test_rs256_tokens_are_checked_against_the_published_keys_and_rotation_is_followed():
    first, second, stranger = rsa_key(), rsa_key(), rsa_key()
    published = {"k1": public_jwk(first, "k1")}
    async with identity_provider(published) as (url, requests):
        config = settings(
            query_api_jwt_secret=None,
            query_api_jwks_url=url,
            query_api_jwt_issuer="https://login.example/tenant/v2.0",
            query_api_jwt_audience="api://query",
            query_api_jwks_min_refetch_seconds=0,
        )
        async with serving(DOCUMENTS, config=config) as client:
            scoped = await get_json(
                client, "/api/analytics", bearer(rs256_token(first, "k1", events=["ev3"]))
            )
            assert scoped["ordersCount"] == 1
            assert len(requests) == 1

            published["k2"] = public_jwk(second, "k2")  # the provider rotates in a new key
            assert (
                await client.get("/api/analytics", headers=bearer(rs256_token(second, "k2")))
            ).status == 200
            assert len(requests) == 2

            await assert_refused(client, bearer(rs256_token(stranger, "k2")), detail="signature")
            await assert_refused(client, bearer(rs256_token(stranger, "k9")), detail="does not publish")
            # The public key used as an HS256 secret (algorithm confusion) is refused: no shared secret here.
            pem = first.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            await assert_refused(client, bearer(_hs256_signed_with(pem)), detail="'HS256' are not accepted")


def _hs256_signed_with(key: bytes) -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}')
    payload = jwt.utils.base64url_encode(
        b'{"iss":"https://login.example/tenant/v2.0","aud":"api://query","exp":4102444800}'
    )
    signature = hmac.new(key, header + b"." + payload, hashlib.sha256).digest()
    return (header + b"." + payload + b"." + jwt.utils.base64url_encode(signature)).decode()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_published_keys_are_cached_and_unknown_ids_refetch_at_most_once_per_interval():
    key = rsa_key()
    fetched = []
    document = {"keys": [public_jwk(key, "k1")]}

    async def fetch():
        fetched.append(1)
        return document

    clock = FakeClock()
    keys = PublishedKeys(fetch, refresh_seconds=3600, min_refetch_seconds=30, clock=clock)
    assert (await keys.key("k1")).key_id == "k1"
    assert (await keys.key("k1")).key_id == "k1"
    assert len(fetched) == 1
    assert await keys.key("unknown") is None
    assert len(fetched) == 1  # within the minimum interval: no fetch for every forged kid
    clock.now += 31
    assert await keys.key("unknown") is None
    assert len(fetched) == 2
    clock.now += 3600
    await keys.key("k1")
    assert len(fetched) == 3  # old keys are refreshed


async def test_a_provider_outage_keeps_the_keys_held_and_without_any_is_a_503():
    key = rsa_key()
    up = {"ok": True}

    async def fetch():
        if not up["ok"]:
            raise ConnectionError("provider down")
        return {"keys": [public_jwk(key, "k1")]}

    clock = FakeClock()
    keys = PublishedKeys(fetch, refresh_seconds=60, min_refetch_seconds=5, clock=clock)
    await keys.key("k1")
    up["ok"] = False
    clock.now += 61
    assert (await keys.key("k1")).key_id == "k1"

    async with identity_provider({}) as (url, _):
        config = settings(query_api_jwt_secret=None, query_api_jwks_url=url + "-missing")
        async with serving(DOCUMENTS, config=config) as client:
            response = await client.get("/api/analytics", headers=bearer(rs256_token(key, "k1")))
            assert response.status == 503
            assert response.headers["Retry-After"]


@pytest.mark.parametrize("secret", ["too-short"])
def test_a_short_shared_secret_is_refused_at_start(secret):
    with pytest.raises(ValueError, match="at least 32 bytes"):
        settings(query_api_jwt_secret=secret)
