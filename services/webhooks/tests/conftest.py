"""The webhook service wired on in-memory fakes of the project's own interfaces."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from stripe_fixtures import CONNECT_SECRET, PLATFORM_SECRET

from otcommon.store import DEFAULT_TOPOLOGY, InMemoryContainer
from webhooks.app import Webhooks, create_app
from webhooks.journal import UNAPPLIED_QUERY, EventJournal
from webhooks.processor import EventApplier, EventProcessor, IgnoreAll
from webhooks.settings import WebhookSettings

OLD_PLATFORM_SECRET = "whsec_platform_previous"


@pytest.fixture
def settings() -> WebhookSettings:
    return WebhookSettings(
        cosmos_connection_string="AccountEndpoint=https://127.0.0.1:1/;AccountKey=a2V5;",
        servicebus_connection_string=(
            "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"
        ),
        webhooks_platform_secrets=f"{PLATFORM_SECRET},{OLD_PLATFORM_SECRET}",
        webhooks_connect_secrets=CONNECT_SECRET,
    )


def container(name: str, **queries) -> InMemoryContainer:
    """An in-memory container declared like the real one."""
    return InMemoryContainer(
        name, partition_key_path=DEFAULT_TOPOLOGY.container(name).partition_key, queries=queries or None
    )


def unapplied(documents, parameters):
    """The in-memory answer to the journal's sweep query."""
    return [
        doc
        for doc in documents
        if doc["state"] == parameters["@state"] and doc["receivedAt"] < parameters["@before"]
    ]


class Clock:
    """A settable clock for the journal."""

    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Service:
    """The service's parts on fakes; ``app()`` serves them."""

    settings: WebhookSettings
    events: InMemoryContainer
    clock: Clock
    processor: EventProcessor

    def app(self):
        @contextlib.asynccontextmanager
        async def components(_settings):
            yield Webhooks(processor=self.processor, health_checks={})

        return create_app(self.settings, open_components=components)


def build_service(settings: WebhookSettings, applier: EventApplier | None = None) -> Service:
    clock = Clock()
    events = container("webhook-events", **{UNAPPLIED_QUERY: unapplied})
    processor = EventProcessor(
        journal=EventJournal(events, clock=clock),
        applier=applier or IgnoreAll(),
        sweep_age=timedelta(seconds=10),
        max_attempts=3,
    )
    return Service(settings=settings, events=events, clock=clock, processor=processor)


@pytest.fixture
def service(settings) -> Service:
    return build_service(settings)
