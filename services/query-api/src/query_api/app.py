"""Wiring: the token verifier and policies from settings, the read model loaded in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web

from otcommon.clients import open_azure_clients
from otcommon.health import add_health_routes, cosmos_check
from otcommon.http import problem_middleware, request_context_middleware
from query_api.auth import PublishedKeys, TokenVerifier
from query_api.changefeed import CosmosChangeFeed
from query_api.cors import CorsPolicy
from query_api.follower import Backoff, ChangeFeedFollower
from query_api.live import LiveUpdateOptions, LiveUpdates
from query_api.loading import load_transactions
from query_api.openapi import openapi_document
from query_api.params import Limits
from query_api.readside import ReadSide
from query_api.routes import OPENAPI_DOCUMENT, POLICY, READ_SIDE, VERIFIER, HttpPolicy, routes
from query_api.server_timing import install_server_timing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from otcommon.http import Principal
    from otcommon.store import DocumentContainer
    from query_api.changefeed import ChangeFeed
    from query_api.settings import QueryApiSettings

log = structlog.get_logger("query_api.app")

JWKS_TIMEOUT_SECONDS = 10.0
MAX_REQUEST_LINE_BYTES = 512 * 1024
"""Room for the longest query string the documented bounds allow (3 text lists x 100 values x 100
characters, each up to 12 bytes percent-encoded, plus q and a cursor), so an over-long request gets
the problem naming its parameter rather than the HTTP parser's plain-text refusal."""
LOAD_RETRY_FIRST_SECONDS = 1.0
LOAD_RETRY_MAX_SECONDS = 30.0


@dataclass
class QuerySources:
    """What the query API reads: the transactions container, and checks of its dependencies."""

    transactions: DocumentContainer
    health_checks: dict[str, Callable[[], Awaitable[None]]]
    change_feed: ChangeFeed | None = None
    """The transactions' change feed; without one the read model is loaded once and never refreshed."""


@contextlib.asynccontextmanager
async def open_sources(settings: QueryApiSettings) -> AsyncIterator[QuerySources]:
    """Open Cosmos DB (provisioned) and yield the transactions container; close at exit."""
    async with open_azure_clients(settings) as clients:
        database = clients.cosmos.get_database_client(settings.cosmos.database)
        yield QuerySources(
            transactions=clients.container("transactions"),
            health_checks={"cosmos": cosmos_check(clients.cosmos, database=settings.cosmos.database)},
            change_feed=CosmosChangeFeed(database.get_container_client("transactions")),
        )


def live_update_options(settings: QueryApiSettings) -> LiveUpdateOptions:
    """The change feed follower's and the stream's bounds from settings."""
    return LiveUpdateOptions(
        poll_seconds=settings.query_api_feed_poll_seconds,
        replay_events=settings.query_api_stream_replay_events,
        subscriber_queue=settings.query_api_stream_client_queue,
        heartbeat_seconds=settings.query_api_stream_heartbeat_seconds,
        stale_after_seconds=settings.query_api_feed_stale_after_seconds,
        backoff=Backoff(initial_seconds=LOAD_RETRY_FIRST_SECONDS, max_seconds=LOAD_RETRY_MAX_SECONDS),
    )


def create_app(
    settings: QueryApiSettings,
    *,
    open_components: Callable[
        [QueryApiSettings], contextlib.AbstractAsyncContextManager[QuerySources]
    ] = open_sources,
    read_side: ReadSide | None = None,
) -> web.Application:
    """The HTTP app; the lifespan opens Cosmos DB and loads the read model while /readyz says 503."""
    cors = CorsPolicy(settings.query_api_cors_origins)
    app = web.Application(handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES})
    # Server-Timing's clock first, then the request context (SERVICE_MIDDLEWARES' order), then
    # preflights, then problems.
    app.middlewares.extend(
        [install_server_timing(app), request_context_middleware, cors.install(app), problem_middleware]
    )
    side = read_side or ReadSide(answer_threads=settings.query_api_answer_threads)
    app[READ_SIDE] = side
    app[POLICY] = HttpPolicy(
        limits=Limits(
            max_list_values=settings.query_api_max_list_values,
            max_date_span=timedelta(days=settings.query_api_max_date_span_days),
            max_hourly_span=timedelta(days=settings.query_api_max_hourly_span_days),
        ),
        analytics_max_age_seconds=settings.query_api_analytics_max_age_seconds,
    )
    app[OPENAPI_DOCUMENT] = openapi_document(settings)
    app.add_routes(routes)
    live = LiveUpdates(model=side.model, options=live_update_options(settings), changes=side)
    live.add_stream_route(app, authenticate=_authenticate)
    checks: dict[str, Callable[[], Awaitable[None]]] = {"readModel": side.readiness_check}
    add_health_routes(app, checks)

    async def verifier(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=JWKS_TIMEOUT_SECONDS)) as http:
            app[VERIFIER] = TokenVerifier(
                rules=settings.token_rules(),
                shared_secret=settings.query_api_jwt_secret,
                published_keys=_published_keys(settings, http),
            )
            yield

    async def lifespan(_: web.Application) -> AsyncIterator[None]:
        async with open_components(settings) as sources:
            checks.update(sources.health_checks)
            if sources.change_feed is not None:
                checks["changeFeed"] = live.readiness_check
            try:
                async with _keep_current(sources, side, live):
                    yield
            finally:
                side.close()

    app.cleanup_ctx.extend([verifier, lifespan])
    return app


def _published_keys(settings: QueryApiSettings, http: aiohttp.ClientSession) -> PublishedKeys | None:
    url = settings.query_api_jwks_url
    if url is None:
        return None

    async def fetch() -> Mapping[str, Any]:
        async with http.get(url, raise_for_status=True) as response:
            document = await response.json(content_type=None)
        if not isinstance(document, dict):
            raise TypeError("the JWKS document is not a JSON object")
        return document

    return PublishedKeys(
        fetch,
        refresh_seconds=settings.query_api_jwks_refresh_seconds,
        min_refetch_seconds=settings.query_api_jwks_min_refetch_seconds,
    )


async def _authenticate(request: web.Request) -> Principal:
    return await request.app[VERIFIER].authenticate(request.headers)


@contextlib.asynccontextmanager
async def _keep_current(sources: QuerySources, side: ReadSide, live: LiveUpdates) -> AsyncIterator[None]:
    """Load the read model, then follow the change feed when there is one; serve once caught up."""
    async with contextlib.AsyncExitStack() as stack:
        if sources.change_feed is None:
            loading = asyncio.create_task(_load(sources.transactions, side), name="query-api-load")
        else:
            # The follower loads (after taking the feed's start point), then follows the feed.
            follower = await stack.enter_async_context(live.following(feed=sources.change_feed))
            loading = asyncio.create_task(_serve_when_caught_up(follower, side), name="query-api-catch-up")
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading


async def _serve_when_caught_up(follower: ChangeFeedFollower, side: ReadSide) -> None:
    started = time.perf_counter()
    await follower.wait_until(lambda status: status.caught_up)
    side.mark_loaded()
    # The same line as a load without a feed: `make run` waits for it.
    log.info(
        "query-api serving",
        held=len(side.model),
        position=follower.status.position,
        start_seconds=round(time.perf_counter() - started, 2),
    )


async def _load(transactions: DocumentContainer, side: ReadSide) -> None:
    """Load every transaction, retrying while Cosmos DB fails; /readyz turns ready when done."""
    delay = LOAD_RETRY_FIRST_SECONDS
    while True:
        started = time.perf_counter()
        try:
            # A retry loads into the same model: copies it already holds are recognised and skipped.
            report = await load_transactions(transactions, side.model)
        except Exception as error:  # noqa: BLE001 - any failure of the store: log it and try again
            log.warning("read model load failed", error_type=type(error).__name__, retry_in_seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LOAD_RETRY_MAX_SECONDS)
            continue
        break
    side.mark_loaded()
    # Ids and reasons only: reasons name fields, never values.
    for rejected in report.rejected:
        log.warning("transaction refused", document_id=rejected.document_id, reason=rejected.reason)
    log.info(
        "query-api serving",
        read=report.read,
        held=report.applied,
        refused=len(report.rejected),
        load_seconds=round(time.perf_counter() - started, 2),
    )
