"""Wiring: clients opened from settings, the enricher built on them, the HTTP app and its consumer."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from enricher.announcer import PublishingAnnouncer
from enricher.handler import EnrichmentHandler, PayoutChangeHandler, StripeEventsHandler
from enricher.indexer import Indexer
from enricher.indexes import StripeIndex
from enricher.payouts import PayoutChanges
from enricher.remote_writer import WriteProcess
from enricher.service import PaymentEnricher
from enricher.stripe_api import StripeApiGateway
from enricher.transfers import TransferChanges
from enricher.write_process import child_environment, writer_on
from otcommon.bus import (
    Consumer,
    ConsumerSettings,
    queue_source,
    topic_publisher,
)
from otcommon.clients import open_azure_clients
from otcommon.health import add_health_routes, cosmos_check, servicebus_check
from otcommon.http import SERVICE_MIDDLEWARES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from enricher.settings import EnricherSettings
    from enricher.writer import PaymentWriter
    from otcommon.bus import MessageSource
    from otcommon.store import DocumentContainer

log = structlog.get_logger("enricher.app")


def utc_now() -> datetime:
    """The wall clock the service runs on."""
    return datetime.now(UTC)


@dataclass
class Enricher:
    """The service's components, built on open clients."""

    gateway: StripeApiGateway
    indexer: Indexer
    handler: EnrichmentHandler
    payouts: PayoutChanges
    stripe_events_handler: StripeEventsHandler
    """Payout changes and new transfers (``stripe-events-queue``)."""
    transactions: DocumentContainer
    source: Callable[[], MessageSource]
    """Opens the receiver of ``stripe-enrichment-queue`` (lock renewal included)."""
    payout_source: Callable[[], MessageSource]
    """Opens the receiver of ``stripe-events-queue`` (StripePayoutChanged, StripeTransferCreated)."""
    health_checks: dict[str, Callable[[], Awaitable[None]]]


@contextlib.asynccontextmanager
async def open_enricher(
    settings: EnricherSettings, *, clock: Callable[[], datetime] = utc_now
) -> AsyncIterator[Enricher]:
    """Open Cosmos DB, Service Bus and Stripe; provision; build the components; close all at exit.

    ``clock`` is the wall clock unless a test runs the components on a simulated Stripe's time.
    """
    api_key = settings.require_stripe_key()
    async with contextlib.AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_azure_clients(settings))
        cosmos, bus, container = clients.cosmos, clients.bus, clients.container

        gateway = StripeApiGateway(
            api_key=api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            requests_per_second=settings.stripe_requests_per_second,
            max_network_retries=settings.stripe_max_network_retries,
            timeout_seconds=settings.stripe_timeout_seconds,
        )
        stack.push_async_callback(gateway.close)
        linger = settings.enricher_coalesce_linger_seconds
        index = StripeIndex(
            container("stripe-index"), facts=container("stripe-facts"), facts_linger_seconds=linger
        )
        indexer = Indexer(
            gateway=gateway,
            index=index,
            clock=clock,
            overlap_seconds=settings.enricher_index_overlap_seconds,
            payout_freshness_seconds=settings.enricher_payout_freshness_seconds,
        )
        publisher = topic_publisher(client=bus, topic_name=settings.enricher_changes_topic)
        stack.push_async_callback(publisher.close)
        transactions = container("transactions")
        health_checks: dict[str, Callable[[], Awaitable[None]]] = {
            "cosmos": cosmos_check(cosmos, database=settings.cosmos.database),
            "servicebus": servicebus_check(bus, queue_name=settings.enricher_queue),
        }
        writer: PaymentWriter
        if settings.enricher_write_processes:
            writer = write_process = WriteProcess(env=child_environment(settings, inherited=os.environ))
            await write_process.start()
            stack.push_async_callback(write_process.close)
            health_checks["write-process"] = write_process.check
        else:
            writer = writer_on(container, linger_seconds=linger)
        handler = EnrichmentHandler(
            enricher=PaymentEnricher(gateway=gateway, index=index, indexer=indexer, clock=clock),
            writer=writer,
            announcer=PublishingAnnouncer(publisher),
            clock=clock,
        )
        payouts = PayoutChanges(
            gateway=gateway,
            index=index,
            indexer=indexer,
            transactions=transactions,
            payments=handler,
            clock=clock,
        )
        yield Enricher(
            gateway=gateway,
            indexer=indexer,
            handler=handler,
            payouts=payouts,
            stripe_events_handler=StripeEventsHandler(
                payouts=PayoutChangeHandler(payouts=payouts),
                transfers=TransferChanges(index=index, indexer=indexer, payments=handler),
            ),
            transactions=transactions,
            source=lambda: queue_source(
                client=bus,
                queue_name=settings.enricher_queue,
                prefetch_count=settings.enricher_max_concurrency,
            ),
            payout_source=lambda: queue_source(
                client=bus,
                queue_name=settings.enricher_payout_queue,
                prefetch_count=settings.enricher_max_concurrency,
            ),
            health_checks=health_checks,
        )


def create_app(
    settings: EnricherSettings,
    *,
    open_components: Callable[
        [EnricherSettings], contextlib.AbstractAsyncContextManager[Enricher]
    ] = open_enricher,
) -> web.Application:
    """Health endpoints; the queue consumer runs in the app's lifespan and drains before it ends."""
    app = web.Application(middlewares=SERVICE_MIDDLEWARES)
    checks: dict[str, Callable[[], Awaitable[None]]] = {}
    add_health_routes(app, checks)

    async def lifespan(_: web.Application) -> AsyncIterator[None]:
        async with open_components(settings) as enricher:
            checks.update(enricher.health_checks)
            consumers = [
                Consumer(
                    source=open_source(),
                    handler=handler,
                    settings=ConsumerSettings(
                        entity_name=queue,
                        max_concurrency=settings.enricher_max_concurrency,
                        shutdown_timeout_seconds=settings.enricher_shutdown_timeout_seconds,
                    ),
                )
                for queue, open_source, handler in (
                    (settings.enricher_queue, enricher.source, enricher.handler),
                    (settings.enricher_payout_queue, enricher.payout_source, enricher.stripe_events_handler),
                )
            ]
            running = [
                asyncio.create_task(consumer.run(), name=f"enricher-consumer-{n}")
                for n, consumer in enumerate(consumers)
            ]
            log.info("enricher serving", queues=[settings.enricher_queue, settings.enricher_payout_queue])
            yield
            # Stop taking messages, let in-flight ones finish within the bound, then close clients.
            await asyncio.gather(*(consumer.stop() for consumer in consumers))
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(lifespan)
    return app
