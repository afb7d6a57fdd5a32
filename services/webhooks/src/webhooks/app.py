"""Wiring: clients opened from settings, components built on them, the HTTP app and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from otcommon.bus import (
    queue_publisher,
    topic_publisher,
)
from otcommon.clients import open_azure_clients
from otcommon.health import add_health_routes, cosmos_check, servicebus_check
from otcommon.http import problem_middleware
from otcommon.payment_transactions import PAYMENT_TRANSACTIONS_CONTAINER
from webhooks.announcements import CoalescingPublisher
from webhooks.applier import StripeFactsApplier
from webhooks.delivery_context import answers_counter, delivery_context_middleware
from webhooks.handoff import HandOffWriter
from webhooks.journal import EventJournal
from webhooks.processor import EventProcessor
from webhooks.routes import LIVEMODE, PROCESSOR, VERIFIER, routes
from webhooks.signature import SignatureVerifier
from webhooks.transactions import TransactionFacts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from opentelemetry.metrics import Counter

    from webhooks.settings import WebhookSettings

log = structlog.get_logger("webhooks.app")

SHUTDOWN_GRACE_SECONDS = 10.0
"""How long queued events get to be applied at shutdown; the rest wait, recorded, for the sweep."""


@dataclass
class Webhooks:
    """The service's components, built on open clients."""

    processor: EventProcessor
    health_checks: dict[str, Callable[[], Awaitable[None]]]


@contextlib.asynccontextmanager
async def open_webhooks(settings: WebhookSettings) -> AsyncIterator[Webhooks]:
    """Open Cosmos DB and Service Bus; provision; build the components; close all at exit."""
    async with contextlib.AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_azure_clients(settings))
        cosmos, bus, container = clients.cosmos, clients.bus, clients.container

        # Concurrent apply workers' messages share sends (webhooks/announcements.py).
        changes_topic = topic_publisher(client=bus, topic_name=settings.webhooks_changes_topic)
        publisher = CoalescingPublisher(changes_topic)
        stack.push_async_callback(publisher.close)
        payouts = CoalescingPublisher(queue_publisher(client=bus, queue_name=settings.webhooks_payout_queue))
        stack.push_async_callback(payouts.close)
        processor = EventProcessor(
            journal=EventJournal(container("webhook-journal")),
            applier=StripeFactsApplier(
                transactions=TransactionFacts(
                    container("transactions"), index=container(PAYMENT_TRANSACTIONS_CONTAINER)
                ),
                changes=publisher,
                payouts=payouts,
            ),
            sweep_age=timedelta(seconds=settings.webhooks_sweep_age_seconds),
            apply_while_answering=settings.webhooks_apply_while_answering,
            batch_size=settings.webhooks_apply_batch_size,
            batch_wait=settings.webhooks_apply_batch_wait_seconds,
        )
        yield Webhooks(
            processor=processor,
            health_checks={
                "cosmos": cosmos_check(cosmos, database=settings.cosmos.database),
                "servicebus": servicebus_check(bus, queue_name=settings.webhooks_payout_queue),
            },
        )


def create_app(
    settings: WebhookSettings,
    *,
    open_components: Callable[[WebhookSettings], contextlib.AbstractAsyncContextManager[Webhooks]] = (
        open_webhooks
    ),
    answers: Counter | None = None,
) -> web.Application:
    """The HTTP app: the Stripe endpoint and health; the applier and the sweep run in its lifespan.

    ``answers`` counts the answers by status (default: the process meter's ``webhooks.http.answers``).
    """
    middlewares = (
        delivery_context_middleware(answers if answers is not None else answers_counter()),
        problem_middleware,
    )
    app = web.Application(middlewares=middlewares, client_max_size=settings.webhooks_max_body_bytes)
    app[VERIFIER] = SignatureVerifier(
        settings.signing_secrets, tolerance_seconds=settings.webhooks_tolerance_seconds
    )
    app[LIVEMODE] = settings.webhooks_livemode
    app.add_routes(routes)
    checks: dict[str, Callable[[], Awaitable[None]]] = {}
    add_health_routes(app, checks)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with open_components(settings) as webhooks:
            app[PROCESSOR] = webhooks.processor
            checks.update(webhooks.health_checks)
            if settings.webhooks_hand_off_fd is not None:
                # An answer process: its apply process applies what it records (webhooks/handoff.py).
                writer = HandOffWriter(settings.webhooks_hand_off_fd)
                await writer.open()
                webhooks.processor.hand_over_to(writer.hand_off)
                log.info("webhooks answering", pid=os.getpid())
                yield
                await writer.close()  # after the last answer: the apply process sees the pipe end
                return
            workers = asyncio.create_task(
                webhooks.processor.serve(
                    workers=settings.webhooks_apply_workers, sweep_every=settings.webhooks_sweep_seconds
                ),
                name="webhooks-processor",
            )
            log.info("webhooks serving", pid=os.getpid())
            yield
            workers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await workers
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(webhooks.processor.drain(), SHUTDOWN_GRACE_SECONDS)

    app.cleanup_ctx.append(lifespan)
    return app
