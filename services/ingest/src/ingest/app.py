"""Wiring: clients opened from settings, components built on them, the HTTP app and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web

from ingest.catalog import CatalogBacklog, EventCatalog, EventStatsQuery
from ingest.checkpoint import CheckpointStore
from ingest.coordinator import SyncCoordinator
from ingest.importer import FileImporter
from ingest.lease import SyncLease
from ingest.queueing import EnrichmentQueue
from ingest.routes import COORDINATOR, SYNC_AUTH, routes
from ingest.source import Credentials, OpenTicketsClient, RetryPolicy, SourceError
from ingest.storage import TransactionWriter
from ingest.sync import SyncRunner
from otcommon.bus import queue_publisher
from otcommon.clients import open_azure_clients
from otcommon.health import add_health_routes, cosmos_check, servicebus_check
from otcommon.http import SERVICE_MIDDLEWARES, BearerAuth, Principal
from otcommon.payment_transactions import PAYMENT_TRANSACTIONS_CONTAINER

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from datetime import datetime

    from ingest.settings import IngestSettings
    from ingest.source import TransactionPage

log = structlog.get_logger("ingest.app")

SHUTDOWN_GRACE_SECONDS = 20.0
"""How long a running sync gets to reach a page boundary; terminationGracePeriodSeconds is longer."""


@dataclass
class Ingest:
    """The service's components, built on open clients."""

    coordinator: SyncCoordinator
    importer: FileImporter
    queue: EnrichmentQueue
    runner: SyncRunner
    health_checks: dict[str, Callable[[], Awaitable[None]]]


@contextlib.asynccontextmanager
async def open_ingest(settings: IngestSettings, *, with_source: bool = True) -> AsyncIterator[Ingest]:
    """Open Cosmos DB, Service Bus and the source API; provision; build the components; close all at exit."""
    async with contextlib.AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_azure_clients(settings))
        cosmos, bus, container = clients.cosmos, clients.bus, clients.container

        transactions = container("transactions")
        publisher = queue_publisher(
            client=bus,
            queue_name=settings.ingest_enrichment_queue,
            max_attempts=settings.ingest_publish_attempts,
        )
        stack.push_async_callback(publisher.close)
        writer = TransactionWriter(
            transactions,
            concurrency=settings.ingest_write_concurrency,
            payment_index=container(PAYMENT_TRANSACTIONS_CONTAINER),
        )
        queue = EnrichmentQueue(publisher=publisher, writer=writer, transactions=transactions)
        catalog = EventCatalog(
            container("events"), EventStatsQuery(transactions), CatalogBacklog(container("state"))
        )
        quarantine = container("quarantine")
        session = await stack.enter_async_context(aiohttp.ClientSession())
        source: OpenTicketsClient | _NoSource = (
            OpenTicketsClient(
                session=session,
                base_url=settings.opentickets_base_url,
                credentials=Credentials(
                    client_id=settings.opentickets_client_id,
                    client_secret=settings.opentickets_client_secret,
                    api_key=settings.opentickets_api_key,
                ),
                page_size=settings.opentickets_page_size,
                retry=RetryPolicy(max_attempts=settings.opentickets_max_attempts),
                timeout_seconds=settings.opentickets_timeout_seconds,
            )
            if with_source
            else _NoSource()
        )
        runner = SyncRunner(
            source=source,
            writer=writer,
            queue=queue,
            checkpoints=CheckpointStore(container("state")),
            quarantine=quarantine,
            catalog=catalog,
            source_name=settings.ingest_source_name,
            overlap=timedelta(seconds=settings.ingest_overlap_seconds),
        )
        lease = SyncLease(
            container("state"),
            name=f"sync:{settings.ingest_source_name}",
            holder=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
            duration_seconds=settings.ingest_lease_seconds,
        )
        coordinator = SyncCoordinator(runner=runner, lease=lease, schedule=settings.schedule)
        importer = FileImporter(writer=writer, queue=queue, quarantine=quarantine, catalog=catalog)
        yield Ingest(
            coordinator=coordinator,
            importer=importer,
            queue=queue,
            runner=runner,
            health_checks={
                "cosmos": cosmos_check(cosmos, database=settings.cosmos.database),
                "servicebus": servicebus_check(bus, queue_name=settings.ingest_enrichment_queue),
            },
        )


class _NoSource:
    """Stands in for the API where a command needs no source (imports, requeues)."""

    def pages(
        self, *, updated_since: datetime | None, event_id: str | None = None
    ) -> AsyncIterator[TransactionPage]:
        del updated_since, event_id
        raise SourceError("this command does not read the OpenTickets API")

    async def events(self) -> list[dict[str, Any]]:
        return []


def _sync_auth(settings: IngestSettings) -> BearerAuth:
    current, previous = settings.ingest_api_token, settings.ingest_api_previous_token
    # The previous token alone enables nothing: a rotation always has a current token.
    tokens = [token.get_secret_value() for token in (current, previous) if token] if current else []
    return BearerAuth.of_tokens(tokens, realm="ingest", principal=Principal(name="sync-operator"))


def create_app(
    settings: IngestSettings,
    *,
    open_components: Callable[[IngestSettings], contextlib.AbstractAsyncContextManager[Ingest]] = open_ingest,
) -> web.Application:
    """The HTTP app: on-demand sync, its progress, health; the scheduler runs in its lifespan."""
    app = web.Application(middlewares=SERVICE_MIDDLEWARES)
    app[SYNC_AUTH] = _sync_auth(settings)
    app.add_routes(routes)
    checks: dict[str, Callable[[], Awaitable[None]]] = {}
    add_health_routes(app, checks)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with open_components(settings) as ingest:
            app[COORDINATOR] = ingest.coordinator
            checks.update(ingest.health_checks)
            scheduler = asyncio.create_task(ingest.coordinator.serve(), name="ingest-scheduler")
            log.info("ingest serving", schedule=settings.ingest_schedule)
            yield
            await ingest.coordinator.shutdown(grace_seconds=SHUTDOWN_GRACE_SECONDS)
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler

    app.cleanup_ctx.append(lifespan)
    return app
