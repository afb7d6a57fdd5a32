"""Helpers of the query API tests: settings, tokens, an in-memory app, and reference queries as filters."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from aiohttp.test_utils import TestClient, TestServer

from otcommon.store import InMemoryContainer
from query_api.app import QuerySources, create_app
from query_api.auth import issue_local_token
from query_api.filters import TransactionFilter
from query_api.loading import ALL_TRANSACTIONS
from query_api.readside import ReadSide
from query_api.scope import EventScope
from query_api.settings import QueryApiSettings

if TYPE_CHECKING:
    from reference import Query

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


def scope_and_filters(query: Query) -> tuple[EventScope, TransactionFilter]:
    """The scope and filters a reference ``Query`` stands for, as the handlers build them."""
    scope = EventScope.everything() if query.scope is None else EventScope.only(query.scope)
    return scope, TransactionFilter.of(
        event_ids=query.event_ids,
        date_from=query.date_from,
        date_to=query.date_to,
        date_mode=query.date_mode,  # type: ignore[arg-type]
        ticket_types=query.ticket_types,
        sources=query.sources,
        refunded=query.refunded,
        disputed=query.disputed,
        valid=query.valid,
        referral_codes=query.referral_codes,
        search=query.search,
    )
