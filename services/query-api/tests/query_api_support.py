"""Helpers of the HTTP tests: settings, tokens, and an app serving documents from the in-memory store."""

from __future__ import annotations

import contextlib
import time

from aiohttp.test_utils import TestClient, TestServer

from otcommon.store import InMemoryContainer
from query_api.app import QuerySources, create_app
from query_api.auth import issue_local_token
from query_api.loading import ALL_TRANSACTIONS
from query_api.readside import ReadSide
from query_api.settings import QueryApiSettings

SECRET = "a-local-test-secret-of-at-least-32-bytes"
ISSUER = "opentickets-local"
AUDIENCE = "opentickets-query-api"


def settings(**overrides) -> QueryApiSettings:
    values = {
        "cosmos_endpoint": "http://127.0.0.1:1/",
        "servicebus_connection_string": (
            "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;"
        ),
        "query_api_jwt_secret": SECRET,
        "query_api_jwt_issuer": ISSUER,
        "query_api_jwt_audience": AUDIENCE,
    }
    values.update(overrides)
    return QueryApiSettings(**values)


def token(events=None, *, secret=SECRET, lifetime_seconds=3600, now=None, **rule_overrides) -> str:
    config = settings(**rule_overrides)
    return issue_local_token(
        secret=secret,
        rules=config.token_rules(),
        subject="tester",
        events=events,
        lifetime_seconds=lifetime_seconds,
        now=time.time() if now is None else now,
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def transactions_container(documents) -> InMemoryContainer:
    container = InMemoryContainer(
        "transactions",
        partition_key_path="/eventId",
        queries={ALL_TRANSACTIONS: lambda stored, _parameters: stored},
    )
    for document in documents:
        await container.upsert({key: value for key, value in document.items() if not key.startswith("_")})
    return container


@contextlib.asynccontextmanager
async def serving(documents, *, config: QueryApiSettings | None = None, loaded: bool = True, container=None):
    """A client of the app over a real loopback socket; the read model loaded from ``documents``."""
    container = container or await transactions_container(documents)
    side = ReadSide()

    async def healthy() -> None:
        return None

    @contextlib.asynccontextmanager
    async def sources(_: QueryApiSettings):
        yield QuerySources(transactions=container, health_checks={"cosmos": healthy})

    app = create_app(config or settings(), open_components=sources, read_side=side)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        if loaded:
            await side.wait_loaded()
        yield client
