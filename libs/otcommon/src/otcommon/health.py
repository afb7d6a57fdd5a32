"""Liveness and readiness: ping each dependency and say which one fails."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from azure.cosmos.aio import CosmosClient
    from azure.servicebus.aio import ServiceBusClient


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    """One dependency's answer to a ping."""

    ok: bool
    latency_ms: float
    error: str | None = None


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
                name: {"ok": s.ok, "latencyMs": s.latency_ms, "error": s.error}
                for name, s in self.dependencies.items()
            },
        }


async def check_dependencies(
    checks: Mapping[str, Callable[[], Awaitable[None]]], *, per_check_seconds: float = 2.0
) -> HealthReport:
    """Run every check concurrently, each bounded by ``per_check_seconds``."""

    async def run(check: Callable[[], Awaitable[None]]) -> DependencyStatus:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(per_check_seconds):
                await check()
        except TimeoutError:
            return DependencyStatus(
                ok=False, latency_ms=_ms(started), error=f"no answer within {per_check_seconds}s"
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
            return DependencyStatus(ok=False, latency_ms=_ms(started), error=f"{type(exc).__name__}: {exc}")
        return DependencyStatus(ok=True, latency_ms=_ms(started))

    names = list(checks)
    results = await asyncio.gather(*(run(checks[name]) for name in names))
    return HealthReport(dependencies=dict(zip(names, results, strict=True)))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def cosmos_check(client: CosmosClient, *, database: str) -> Callable[[], Awaitable[None]]:
    """A readiness check that reads the database's properties."""

    async def check() -> None:
        await client.get_database_client(database).read()

    return check


def servicebus_check(client: ServiceBusClient, *, queue_name: str) -> Callable[[], Awaitable[None]]:
    """A readiness check that peeks one message of a queue (opens a link, settles nothing)."""

    async def check() -> None:
        async with client.get_queue_receiver(queue_name) as receiver:
            await receiver.peek_messages(max_message_count=1)

    return check


HEALTH_CHECKS = web.AppKey[dict[str, "Callable[[], Awaitable[None]]"]]("health_checks")


def add_health_routes(app: web.Application, checks: dict[str, Callable[[], Awaitable[None]]]) -> None:
    """``GET /healthz`` (the process answers) and ``GET /readyz`` (every dependency answers)."""
    app[HEALTH_CHECKS] = checks
    app.router.add_get("/healthz", _liveness)
    app.router.add_get("/readyz", _readiness)


async def _liveness(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readiness(request: web.Request) -> web.Response:
    checks: dict[str, Callable[[], Awaitable[None]]] = request.app[HEALTH_CHECKS]
    report = await check_dependencies(checks)
    return web.json_response(report.to_json(), status=200 if report.ok else 503)
