"""Liveness and readiness: ping each dependency and say which one fails.

`/readyz` is unauthenticated, so it names the failing dependency and a short cause (`timeout`,
`unreachable`, `error`) and nothing else; the exception's type and text go to the log. Every check is cut
at a bound, so the probe answers within about that bound whatever the dependencies do.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from azure.core.exceptions import ServiceRequestError
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusConnectionError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from azure.cosmos.aio import CosmosClient
    from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

_log = structlog.get_logger(__name__)

# Well under a second: a probe must not wait on a dependency that hangs. Checks run concurrently.
READINESS_CHECK_SECONDS = 0.5
# The SDK's own bound on a peek, under the check's bound so the SDK ends the request cleanly itself.
PEEK_TIMEOUT_SECONDS = 0.3


class NotReadyCause(StrEnum):
    """Why a dependency is not ready, in the few words an unauthenticated caller may see."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    """One dependency's answer to a ping."""

    ok: bool
    latency_ms: float
    cause: NotReadyCause | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Readiness: ready only when every dependency answered."""

    dependencies: dict[str, DependencyStatus] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every dependency is healthy."""
        return all(status.ok for status in self.dependencies.values())

    def to_json(self) -> dict[str, Any]:
        """The report as the readiness endpoint returns it."""
        return {
            "status": "ok" if self.ok else "unavailable",
            "dependencies": {
                name: {"ok": s.ok, "latencyMs": s.latency_ms, "cause": s.cause}
                for name, s in self.dependencies.items()
            },
        }


async def check_dependencies(
    checks: Mapping[str, Callable[[], Awaitable[None]]], *, per_check_seconds: float = READINESS_CHECK_SECONDS
) -> HealthReport:
    """Run every check concurrently, each cut (cancelled) at ``per_check_seconds``."""

    async def run(name: str, check: Callable[[], Awaitable[None]]) -> DependencyStatus:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(per_check_seconds):
                await check()
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"; the log gets the details
            cause = _cause_of(error)
            _log.warning(
                "dependency not ready",
                dependency=name,
                cause=cause.value,
                bound_seconds=per_check_seconds,
                error_type=type(error).__name__,
                # SDK errors, not message contents; the logging chain masks anything secret-looking.
                error=str(error),
                latency_ms=_ms(started),
            )
            return DependencyStatus(ok=False, latency_ms=_ms(started), cause=cause)
        return DependencyStatus(ok=True, latency_ms=_ms(started))

    names = list(checks)
    results = await asyncio.gather(*(run(name, checks[name]) for name in names))
    return HealthReport(dependencies=dict(zip(names, results, strict=True)))


def _cause_of(error: Exception) -> NotReadyCause:
    if isinstance(error, TimeoutError | OperationTimeoutError):
        return NotReadyCause.TIMEOUT
    if isinstance(error, ConnectionError | ServiceBusConnectionError | ServiceRequestError):
        return NotReadyCause.UNREACHABLE
    return NotReadyCause.ERROR


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def cosmos_check(client: CosmosClient, *, database: str) -> Callable[[], Awaitable[None]]:
    """A readiness check that reads the database's properties."""

    async def check() -> None:
        await client.get_database_client(database).read()

    return check


class ServiceBusProbe:
    """A readiness check that peeks one message of a queue or subscription (locks and settles nothing).

    Measured against the emulator, opening a receiver takes 0.5-0.9 s in the SDK (a connection of its own,
    authentication, the link attach, then readiness polled with 50 ms sleeps) and closing it 0.5 s, while a
    peek takes 10-20 ms. So the receiver stays open between probes and a probe costs one peek. The
    open runs in a task of its own: a probe cut at its bound while the link opens leaves the open going,
    for the next probe to use. A peek that fails drops the receiver; the next probe opens a new one.
    """

    def __init__(
        self,
        new_receiver: Callable[[], ServiceBusReceiver],
        *,
        peek_timeout_seconds: float = PEEK_TIMEOUT_SECONDS,
    ) -> None:
        self._new_receiver = new_receiver
        self._peek_timeout_seconds = peek_timeout_seconds
        self._opening: asyncio.Task[ServiceBusReceiver] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def __call__(self) -> None:
        """Peek through the open receiver (opening it first if needed)."""
        opening = self._opening
        if opening is None or (opening.done() and (opening.cancelled() or opening.exception() is not None)):
            opening = self._opening = asyncio.create_task(self._open())
        receiver = await asyncio.shield(opening)
        try:
            await receiver.peek_messages(max_message_count=1, timeout=self._peek_timeout_seconds)
        except BaseException:
            # Failed or cut short, the link may be unusable: start afresh next time.
            self._drop(opening, receiver)
            raise

    async def _open(self) -> ServiceBusReceiver:
        receiver = self._new_receiver()
        await receiver.__aenter__()
        return receiver

    def _drop(self, opening: asyncio.Task[ServiceBusReceiver], receiver: ServiceBusReceiver) -> None:
        if self._opening is opening:
            self._opening = None
        closing = asyncio.create_task(receiver.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closed)

    def _closed(self, closing: asyncio.Task[None]) -> None:
        self._closing.discard(closing)
        if not closing.cancelled() and (error := closing.exception()) is not None:
            _log.debug("readiness receiver close failed", error_type=type(error).__name__)


def servicebus_check(client: ServiceBusClient, *, queue_name: str) -> ServiceBusProbe:
    """A readiness check on a queue: peeks one message through a receiver kept open."""
    return ServiceBusProbe(lambda: client.get_queue_receiver(queue_name))


def subscription_check(
    client: ServiceBusClient, *, topic_name: str, subscription_name: str
) -> ServiceBusProbe:
    """A readiness check on a subscription of a topic: peeks one message through a receiver kept open."""
    return ServiceBusProbe(lambda: client.get_subscription_receiver(topic_name, subscription_name))


HEALTH_CHECKS = web.AppKey[dict[str, "Callable[[], Awaitable[None]]"]]("health_checks")
READINESS_BOUND = web.AppKey[float]("readiness_check_seconds")


def add_health_routes(
    app: web.Application,
    checks: dict[str, Callable[[], Awaitable[None]]],
    *,
    per_check_seconds: float = READINESS_CHECK_SECONDS,
) -> None:
    """``GET /healthz`` (the process answers) and ``GET /readyz`` (every dependency answers in time)."""
    app[HEALTH_CHECKS] = checks
    app[READINESS_BOUND] = per_check_seconds
    app.router.add_get("/healthz", _liveness)
    app.router.add_get("/readyz", _readiness)


async def _liveness(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readiness(request: web.Request) -> web.Response:
    checks: dict[str, Callable[[], Awaitable[None]]] = request.app[HEALTH_CHECKS]
    report = await check_dependencies(checks, per_check_seconds=request.app[READINESS_BOUND])
    return web.json_response(report.to_json(), status=200 if report.ok else 503)
