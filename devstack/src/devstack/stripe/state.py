"""Everything one running Stripe sandbox holds: the scenario, its Stripe world, keys, faults, limits, log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.sandbox.faults import FaultController
from devstack.sandbox.settings import build_scenario, initial_faults
from devstack.stripe.events import EventLog, world_changes
from devstack.stripe.keys import KeyRing
from devstack.stripe.listing import SortedObjects
from devstack.stripe.ratelimit import RateLimiter
from devstack.stripe.requestlog import RequestLog
from devstack.stripe.webhooks import WebhookDeliverer, WebhookEndpoint

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.scenario import Changes, StripeWorld
    from devstack.stripe.settings import StripeSandboxSettings

# The world's tables by the resource name of their REST path.
TABLES = (
    "payment_intents",
    "charges",
    "balance_transactions",
    "transfers",
    "application_fees",
    "refunds",
    "disputes",
    "payouts",
)


class WorldView:
    """One Stripe world with its lists sorted per account, built once per clock position."""

    def __init__(self, world: StripeWorld) -> None:
        self.world = world
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            name: getattr(world, name) for name in (*TABLES, "bank_accounts")
        }
        self.table_of: dict[str, str] = {
            object_id: name for name, table in self.tables.items() for object_id in table
        }
        self._lists: dict[tuple[str, str], SortedObjects] = {}
        connected = (a for key, a in world.accounts.items() if key != world.platform_account_id)
        self.connected_accounts = SortedObjects(connected)

    def owned(self, table: str, object_id: str, *, account: str) -> dict[str, Any] | None:
        """The object if it is in `table` and `account` owns it."""
        found = self.tables[table].get(object_id)
        if found is None or self.world.owner[object_id] != account:
            return None
        return found

    def find(self, object_id: str, *, account: str, cross_account: bool) -> dict[str, Any] | None:
        """Any object by id: an account, a bank account or a payment object `account` may read."""
        if object_id in self.world.accounts:
            return self.world.accounts[object_id]
        table = self.table_of.get(object_id)
        if table is None:
            return None
        return (
            self.tables[table][object_id] if cross_account else self.owned(table, object_id, account=account)
        )

    def sorted_list(self, table: str, *, account: str) -> SortedObjects:
        """`account`'s objects of one table, sorted for paging (built on first use)."""
        key = (table, account)
        found = self._lists.get(key)
        if found is None:
            owner = self.world.owner
            found = SortedObjects(o for i, o in self.tables[table].items() if owner[i] == account)
            self._lists[key] = found
        return found


def configured_endpoints(settings: StripeSandboxSettings) -> list[WebhookEndpoint]:
    """The webhook endpoints named at start."""
    endpoints = []
    if settings.webhook_url:
        endpoints.append(WebhookEndpoint(settings.webhook_url, settings.webhook_secret))
    if settings.connect_webhook_url:
        endpoints.append(
            WebhookEndpoint(settings.connect_webhook_url, settings.connect_webhook_secret, connect=True)
        )
    return endpoints


class StripeSandboxState:
    """The sandbox's data and controls; tests reach it through `devstack.stripe.testing`."""

    def __init__(self, *, settings: StripeSandboxSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.keys = KeyRing(settings)
        self.faults = FaultController(initial_faults(settings))
        self.limiter = RateLimiter(per_second=settings.rate_limit_per_second, clock=clock)
        self.requests = RequestLog()
        self.scenario = build_scenario(settings)
        self._view: WorldView | None = None
        self.events = EventLog()
        self.webhooks = WebhookDeliverer(
            events=self.events,
            endpoints=configured_endpoints(settings),
            retry_delays=settings.webhook_retry_delays,
        )

    @property
    def view(self) -> WorldView:
        """The Stripe world at the scenario's current moment."""
        world = self.scenario.stripe
        if self._view is None or self._view.world is not world:
            self._view = WorldView(world)
        return self._view

    @property
    def platform_account_id(self) -> str:
        """The platform's account id."""
        return self.scenario.world.platform.id

    def advance(self, *, minutes: float, refunds: int = 0, disputes: int = 0, scans: int = 0) -> Changes:
        """Move the scenario clock as the OpenTickets sandbox moves its own; keep and send the events."""
        before = self.view.world
        changes = self.scenario.advance(minutes=minutes, refunds=refunds, disputes=disputes, scans=scans)
        for event in world_changes(before, self.view.world, at=self.scenario.now):
            if self.events.add(event):
                self.webhooks.enqueue(event)
        return changes

    def reset(self) -> None:
        """Back to the start: the seeded scenario, start-up faults and limit, keys restored, log cleared."""
        self.scenario = build_scenario(self.settings)
        self._view = None
        self.faults = FaultController(initial_faults(self.settings))
        self.limiter.per_second = self.settings.rate_limit_per_second
        self.keys.restore_all()
        self.requests.clear()
        self.events = self.webhooks.events = EventLog()
