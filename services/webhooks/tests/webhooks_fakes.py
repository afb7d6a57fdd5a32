"""The webhook service wired on in-memory fakes of the project's own interfaces (test helpers)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from otcommon.store import DEFAULT_TOPOLOGY, InMemoryContainer
from webhooks.app import Webhooks, create_app
from webhooks.journal import UNAPPLIED_QUERY, EventJournal
from webhooks.processor import EventApplier, EventProcessor, IgnoreAll

if TYPE_CHECKING:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from webhooks.settings import WebhookSettings

OLD_PLATFORM_SECRET = "whsec_platform_previous"


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

    def app(self, answers=None):
        @contextlib.asynccontextmanager
        async def components(_settings):
            yield Webhooks(processor=self.processor, health_checks={})

        return create_app(self.settings, open_components=components, answers=answers)


def build_service(
    settings: WebhookSettings, applier: EventApplier | None = None, *, ignored: metrics.Counter | None = None
) -> Service:
    clock = Clock()
    events = container("webhook-journal", **{UNAPPLIED_QUERY: unapplied})
    processor = EventProcessor(
        journal=EventJournal(events, clock=clock),
        applier=applier or IgnoreAll(),
        sweep_age=timedelta(seconds=10),
        max_attempts=3,
        ignored=ignored,
    )
    return Service(settings=settings, events=events, clock=clock, processor=processor)


def counted(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, object], ...], int]:
    """A counter's values so far, by its attributes (sorted pairs)."""
    values: dict[tuple[tuple[str, object], ...], int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        values[tuple(sorted((point.attributes or {}).items()))] = int(point.value)
    return values
