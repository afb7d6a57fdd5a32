"""The whole local system: every stand-in started, Cosmos DB provisioned, the services started.

Processes start in dependency order and stop in reverse; a failure while starting stops
everything already started, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from pydantic import SecretStr

from devstack import cosmos
from devstack.paths import project_topology
from devstack.processes import StartupError, start_process
from devstack.servicebus.testing import connection_string as emulator_connection_string
from devstack.servicebus.testing import free_port
from otcommon.settings import CosmosConnection
from otcommon.store import DEFAULT_TOPOLOGY, ProvisionReport, create_cosmos_client, provision

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from devstack.processes import ManagedProcess

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's published test credential
LOCAL_SYNC_TOKEN = "local-sync-token"  # noqa: S105 - guards the local ingest endpoint only
LOCAL_QUERY_API_SECRET = "local-query-api-secret-of-at-least-32-bytes"  # noqa: S105 - signs local tokens only
# The local overlay's signing secrets (deploy/overlays/local): the Stripe sandbox signs with them.
LOCAL_WEBHOOK_SECRETS = {"platform": "whsec_local_platform", "connect": "whsec_local_connect"}


@dataclass(frozen=True, slots=True)
class StackPorts:
    """Where each part listens (0 picks a free port)."""

    host: str = "127.0.0.1"
    cosmos: int = 8081
    servicebus: int = 5672
    opentickets: int = 8090
    stripe: int = 12111
    ingest: int = 8080
    webhooks: int = 8082
    enricher: int = 8083
    query_api: int = 8084


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What to start besides the stand-ins."""

    database: str = "opentickets"
    sandbox_orders: int = 2000
    sandbox_events: int = 6
    services: bool = True
    first_sync: bool = True
    topology: Path | None = None


@dataclass
class Stack:
    """Started processes, stopped in reverse order."""

    options: StackOptions = field(default_factory=StackOptions)
    processes: list[ManagedProcess] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)

    def start(self, ports: StackPorts, *, on_progress: Callable[[str], None] = lambda _: None) -> None:
        """Start every part; on any failure stop what started and re-raise."""
        try:
            self._start_cosmos(ports, on_progress)
            self._start_servicebus(ports, on_progress)
            self._start_sandbox(ports, on_progress)
            self._start_stripe(ports, on_progress)
            if self.options.services:
                self._start_ingest(ports, on_progress)
                self._start_webhooks(ports, on_progress)
                self._start_query_api(ports, on_progress)
                self._start_enricher(ports, on_progress)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every started process, last started first."""
        while self.processes:
            process = self.processes.pop()
            with contextlib.suppress(Exception):
                process.stop()

    def _start_cosmos(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        on_progress("starting the Cosmos DB stand-in")
        process = cosmos.start_cosmos(host=ports.host, port=ports.cosmos)
        self.processes.append(process)
        connection = cosmos.connection_for(process, database=self.options.database)
        on_progress(f"provisioning database {self.options.database!r}")
        report = asyncio.run(provision_database(connection))
        on_progress("containers: " + ", ".join(f"{k} ({v})" for k, v in report.containers.items()))
        self.endpoints["cosmos"] = connection.endpoint
        self.environment["OT_COSMOS_CONNECTION_STRING"] = cosmos.connection_string(connection.endpoint)
        self.environment["OT_COSMOS_DATABASE"] = self.options.database

    def _start_servicebus(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        on_progress("starting the Service Bus emulator")
        port = ports.servicebus or free_port(ports.host)
        process = start_process(
            "servicebus",
            [
                sys.executable,
                "-m",
                "devstack.servicebus",
                "--config",
                str(self.options.topology or project_topology()),
                "--host",
                ports.host,
                "--port",
                str(port),
            ],
            ready_pattern=r"servicebus emulator ready on (?P<address>\S+)",
            timeout_seconds=30,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes.append(process)
        self.endpoints["servicebus"] = f"amqp://{process.ready['address']}"
        self.environment["OT_SERVICEBUS_CONNECTION_STRING"] = emulator_connection_string(
            host=ports.host, port=port
        )

    def _start_sandbox(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        on_progress(f"starting the OpenTickets sandbox ({self.options.sandbox_orders} orders)")
        process = self._start_scenario_server(
            "opentickets", ports.host, ports.opentickets, r"opentickets-sandbox ready on (?P<url>http://\S+)"
        )
        url = process.ready["url"]
        self.endpoints["opentickets"] = url
        self.environment["OT_OPENTICKETS_BASE_URL"] = url
        self.environment["OT_OPENTICKETS_CLIENT_ID"] = SANDBOX_CLIENT_ID
        self.environment["OT_OPENTICKETS_CLIENT_SECRET"] = SANDBOX_CLIENT_SECRET

    def _start_stripe(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        on_progress("starting the Stripe sandbox (the same scenario as the OpenTickets sandbox)")
        # The OpenTickets sandbox's defaults for --seed and --organizers are the Stripe sandbox's too.
        process = self._start_scenario_server(
            "stripe",
            ports.host,
            ports.stripe,
            r"stripe-sandbox ready on (?P<url>http://\S+) key (?P<key>\S+)",
        )
        url = process.ready["url"]
        self.endpoints["stripe"] = f"{url} (key {process.ready['key']})"
        self.environment["OT_STRIPE_API_BASE"] = url
        self.environment["OT_STRIPE_API_KEY"] = process.ready["key"]

    def _start_scenario_server(self, name: str, host: str, port: int, ready_pattern: str) -> ManagedProcess:
        """One of the sandboxes (``python -m devstack.<name>``) over the stack's scenario, once ready."""
        scenario = [
            "--orders",
            str(self.options.sandbox_orders),
            "--events",
            str(self.options.sandbox_events),
        ]
        process = start_process(
            name,
            [sys.executable, "-m", f"devstack.{name}", "--host", host, "--port", str(port), *scenario],
            ready_pattern=ready_pattern,
            timeout_seconds=120,
        )
        self.processes.append(process)
        return process

    def _start_service(
        self,
        service: str,
        *,
        module: str,
        port: int,
        host: str,
        settings: dict[str, str],
        timeout_seconds: float = 60,
    ) -> tuple[int, dict[str, str]]:
        """Start ``python -m <module> serve`` on ``port`` (0: a free one); its port and environment.

        Every service reads ``OT_<PREFIX>_HTTP_HOST`` / ``_PORT`` (the prefix is the service's name in
        capitals) and logs ``<service> serving`` once it is ready.
        """
        port = port or free_port(host)
        prefix = "OT_" + service.upper().replace("-", "_")
        env = {
            **os.environ,
            **self.environment,
            **settings,
            f"{prefix}_HTTP_HOST": host,
            f"{prefix}_HTTP_PORT": str(port),
            "OT_LOG_FORMAT": "json",
            "OTEL_SERVICE_NAME": service,
        }
        process = start_process(
            service,
            [sys.executable, "-m", module, "serve"],
            ready_pattern=rf"{service} serving",
            timeout_seconds=timeout_seconds,
            env=env,
        )
        self.processes.append(process)
        return port, env

    def _start_ingest(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        on_progress("starting the ingest service")
        port, _ = self._start_service(
            "ingest",
            module="ingest",
            port=ports.ingest,
            host=ports.host,
            settings={"OT_INGEST_API_TOKEN": LOCAL_SYNC_TOKEN},
        )
        url = f"http://{ports.host}:{port}"
        self.endpoints["ingest"] = url
        if self.options.first_sync:
            on_progress("first sync: " + asyncio.run(first_sync(url)))

    def _start_webhooks(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        """The webhook service, with the Stripe sandbox's platform and Connect endpoints pointed at it."""
        on_progress("starting the webhook service")
        secrets = {
            "OT_WEBHOOKS_PLATFORM_SECRETS": LOCAL_WEBHOOK_SECRETS["platform"],
            "OT_WEBHOOKS_CONNECT_SECRETS": LOCAL_WEBHOOK_SECRETS["connect"],
        }
        port, _ = self._start_service(
            "webhooks", module="webhooks", port=ports.webhooks, host=ports.host, settings=secrets
        )
        self.environment.update(secrets)
        url = f"http://{ports.host}:{port}/api/webhooks/stripe"
        self.endpoints["webhooks"] = url
        asyncio.run(point_stripe_webhooks(self.environment["OT_STRIPE_API_BASE"], url))
        on_progress(f"the Stripe sandbox delivers platform and Connect events to {url}")

    def _start_enricher(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        on_progress("starting the enricher")
        port, _ = self._start_service(
            "enricher", module="enricher", port=ports.enricher, host=ports.host, settings={}
        )
        self.endpoints["enricher"] = f"http://{ports.host}:{port}"
        if self.options.first_sync:
            connection = CosmosConnection(
                endpoint=self.endpoints["cosmos"],
                key=SecretStr(cosmos.EMULATOR_KEY),
                database=self.options.database,
            )
            summary = wait_for_enrichment(
                connection, on_progress=on_progress, stripe_url=self.environment["OT_STRIPE_API_BASE"]
            )
            on_progress(asyncio.run(summary))

    def _start_query_api(self, ports: StackPorts, on_progress: Callable[[str], None]) -> None:
        """The query API on the data ingest stored, and a token for it (printed with the endpoints)."""
        on_progress("starting the query API (loads every stored transaction first)")
        port, env = self._start_service(
            "query-api",
            module="query_api",
            port=ports.query_api,
            host=ports.host,
            settings={"OT_QUERY_API_JWT_SECRET": LOCAL_QUERY_API_SECRET},
            timeout_seconds=120,
        )
        token = subprocess.run(
            [sys.executable, "-m", "query_api", "token"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        self.endpoints["query-api"] = f"http://{ports.host}:{port}"
        self.endpoints["query-token"] = token
        self.environment["OT_QUERY_API_JWT_SECRET"] = LOCAL_QUERY_API_SECRET


async def point_stripe_webhooks(stripe_url: str, endpoint_url: str) -> None:
    """Register the platform and the Connect endpoint with the Stripe sandbox, each with its secret."""
    async with aiohttp.ClientSession() as session:
        for kind, secret in LOCAL_WEBHOOK_SECRETS.items():
            body = {"url": endpoint_url, "secret": secret, "connect": kind == "connect"}
            async with session.post(f"{stripe_url}/_sandbox/webhooks", json=body) as response:
                if response.status != 200:  # noqa: PLR2004
                    raise StartupError(
                        f"the Stripe sandbox refused the {kind} webhook endpoint: {response.status}"
                    )


async def provision_database(connection: CosmosConnection) -> ProvisionReport:
    """Create the database and the declared containers (idempotent)."""
    async with create_cosmos_client(connection) as client:
        return await provision(client, database=connection.database, topology=DEFAULT_TOPOLOGY)


async def first_sync(ingest_url: str, *, timeout_seconds: float = 120.0) -> str:
    """Ask ingest for a sync now and wait for it; returns a one-line summary."""
    headers = {"Authorization": f"Bearer {LOCAL_SYNC_TOKEN}"}
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout_seconds):
        while True:
            try:
                async with session.post(f"{ingest_url}/sync", headers=headers) as response:
                    if response.status in {202, 409}:
                        break
            except aiohttp.ClientConnectionError:
                pass  # the listener opens right after the service reports ready
            await asyncio.sleep(0.2)
        while True:
            async with session.get(f"{ingest_url}/sync", headers=headers) as response:
                body = await response.json()
            if not body["running"]:
                progress = body["progress"]
                if progress["state"] != "completed":
                    raise StartupError(f"the first sync ended {progress['state']}: {progress.get('error')}")
                return (
                    f"{progress['rows_read']} rows read, {progress['created']} stored, "
                    f"{progress['queued']} payments queued"
                )
            await asyncio.sleep(0.2)


async def wait_for_enrichment(
    connection: CosmosConnection,
    *,
    on_progress: Callable[[str], None],
    stripe_url: str,
    timeout_seconds: float = 600.0,
    progress_every_seconds: float = 5.0,
) -> str:
    """Wait until no payment waits for the enricher (bounded); a summary by route and deposit status.

    Routes are counted twice: as the enricher classified them (`stripeRouteType`: platform or
    connected, SPEC section 2), and by the Stripe sandbox's own route of each enriched payment
    (platform, destination, separate_transfer, direct), which the enricher's two values cannot tell apart.
    """
    query = "SELECT c.PaymentID, c.enrichmentState, c.stripeRouteType, c.depositStatus FROM c"
    async with create_cosmos_client(connection) as client:
        transactions = client.get_database_client(connection.database).get_container_client("transactions")
        loop = asyncio.get_running_loop()
        started = next_report = loop.time()
        while True:
            rows = [row async for row in transactions.query_items(query) if row.get("enrichmentState")]
            waiting = sum(row["enrichmentState"] in {"pending", "queued"} for row in rows)
            if not waiting or loop.time() >= started + timeout_seconds:
                break
            if loop.time() >= next_report:
                on_progress(f"enriching: {len(rows) - waiting} of {len(rows)} payments done")
                next_report = loop.time() + progress_every_seconds
            await asyncio.sleep(1.0)
    enriched = [row for row in rows if row["enrichmentState"] == "enriched"]
    routes = Counter(row.get("stripeRouteType") for row in enriched)
    stripe_route_of = await _stripe_routes(stripe_url)
    stripe_routes = Counter(stripe_route_of.get(row.get("PaymentID") or "") for row in enriched)
    deposits = Counter(row.get("depositStatus") for row in enriched)
    summary = (
        f"{len(enriched)} of {len(rows)} payments enriched; by route: {_counts(routes)}; "
        f"by Stripe route: {_counts(stripe_routes)}; "
        f"by deposit status: {_counts(deposits)}; unresolved: {len(rows) - len(enriched) - waiting}"
    )
    if waiting:
        return f"{summary}; still waiting after {timeout_seconds:.0f} s: {waiting} (see the enricher's log)"
    return summary


async def _stripe_routes(stripe_url: str) -> dict[str, str]:
    """Each PaymentID's route in the Stripe sandbox's world (its ground truth)."""
    async with aiohttp.ClientSession() as session, session.get(f"{stripe_url}/_sandbox/payments") as response:
        if response.status != 200:  # noqa: PLR2004
            raise StartupError(f"the Stripe sandbox did not give its payments: {response.status}")
        body = await response.json()
    return {facts["payment_id"]: facts["route"] for facts in body["data"]}


def _counts(counter: Counter[str | None]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items(), key=str)) or "none"
