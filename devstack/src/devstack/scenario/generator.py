# ruff: noqa: S311 - seeded, reproducible pseudo-randomness is the point; nothing here is a secret
"""`Scenario`: the seeded world every stand-in serves from, with a clock that can move forward."""

from __future__ import annotations

import bisect
import dataclasses
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from devstack.scenario import catalog
from devstack.scenario.orders import HOUR, MAX_INDEX, generate_order, order_id
from devstack.scenario.rows import iso_utc, project_row
from devstack.scenario.stripe_world import build_stripe_world
from devstack.scenario.world import World, build_world

if TYPE_CHECKING:
    from collections.abc import Iterator

    from devstack.scenario.model import Event, Order
    from devstack.scenario.stripe_world import StripeWorld

DEFAULT_START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Bounds for one advance() call, so a typo cannot make a request run for minutes.
MAX_ADVANCE_MINUTES = 366 * 24 * 60
MAX_FORCED_CHANGES = 100_000


@dataclass(frozen=True, slots=True)
class Changes:
    """What one `advance()` did: the new clock and the ids of new and updated orders."""

    now: str
    new_ids: tuple[str, ...]
    updated_ids: tuple[str, ...]

    @property
    def changed_ids(self) -> tuple[str, ...]:
        """New and updated ids together."""
        return self.new_ids + self.updated_ids


def event_json(event: Event, *, organizer_name: str) -> dict[str, Any]:
    """The OpenTickets API representation of an event."""
    return {
        "id": event.id,
        "name": event.name,
        "tourName": event.tour_name,
        "city": event.city,
        "venue": event.venue,
        "timeZone": event.time_zone,
        "startsAt": iso_utc(event.starts_at),
        "onSaleAt": iso_utc(event.on_sale_at),
        "currency": "usd",
        "organizerId": event.organizer_id,
        "organizerName": organizer_name,
        "ticketTypes": [{"name": t.name, "price": t.price_cents / 100} for t in event.ticket_types],
    }


class Scenario:
    """A deterministic world of organizers, events, orders and their Stripe payments."""

    def __init__(
        self,
        *,
        seed: int = 7,
        events: int = 6,
        orders: int = 1000,
        organizers: int = 3,
        sales_per_hour: float | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError("seed must be >= 0")
        if events < 1 or organizers < 1:
            raise ValueError("events and organizers must be >= 1")
        if not 0 <= orders < MAX_INDEX // 2:
            raise ValueError("orders out of range")
        self.seed = seed
        self.initial_orders = orders
        self.world: World = build_world(
            seed=seed, events=events, organizers=organizers, orders=orders, start=DEFAULT_START
        )
        self.now: int = self.world.start
        # New sales arrive as a Poisson process whose times depend only on the seed, so advancing
        # 60 minutes twice reveals the same sales as advancing 120 minutes once.
        self.sales_per_hour = sales_per_hour if sales_per_hour is not None else max(1.0, orders / 400)
        self._sales_rng = random.Random(f"sales:{seed}")
        self._next_sale_at = self.now + self._sale_gap()
        self._next_sale_index = orders
        self._later_orders: list[int] = []
        self._overrides: dict[int, Order] = {}
        self._orders_paid_by_others = 0
        self._fact_index: list[tuple[int, int]] | None = None
        self._advances = 0
        self._event_names = {event.id: event.name for event in self.world.events}
        self._stripe: tuple[tuple[int, int], StripeWorld] | None = None
        self._version = 0

    # -- reading -------------------------------------------------------------------------------

    @property
    def now_iso(self) -> str:
        """The scenario clock as an ISO 8601 UTC timestamp."""
        return iso_utc(self.now)

    @property
    def version(self) -> int:
        """Increases whenever the visible data change."""
        return self._version

    def events(self) -> list[dict[str, Any]]:
        """Every event as the OpenTickets API shows it."""
        names = {organizer.id: organizer.name for organizer in self.world.organizers}
        return [event_json(event, organizer_name=names[event.organizer_id]) for event in self.world.events]

    def event_ids(self) -> list[str]:
        """Ids of every event, in tour order."""
        return [event.id for event in self.world.events]

    def order_count(self) -> int:
        """Number of orders visible now."""
        return self.initial_orders + len(self._later_orders)

    def order_indexes(self) -> Iterator[int]:
        """Indexes of the visible orders in the order they were created."""
        yield from range(self.initial_orders)
        yield from self._later_orders

    def order(self, index: int) -> Order:
        """The full (latent) order `index`."""
        found = self._overrides.get(index)
        if found is not None:
            return found
        generated = generate_order(self.world, index)
        if generated is None:  # pragma: no cover - initial orders always have an event
            raise KeyError(index)
        return generated

    def orders(self, *, event_id: str | None = None) -> Iterator[Order]:
        """The visible orders, optionally of one event."""
        for index in self.order_indexes():
            order = self.order(index)
            if event_id is None or order.event_id == event_id:
                yield order

    def row(self, order: Order) -> dict[str, Any]:
        """The API/export row of `order` as visible now."""
        return project_row(order, event_name=self._event_names[order.event_id], now=self.now)

    def transactions(self, *, event_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Rows of every visible order (the export fields plus id, eventId, updatedAt)."""
        for order in self.orders(event_id=event_id):
            yield self.row(order)

    @property
    def stripe(self) -> StripeWorld:
        """The Stripe side of the current moment (accounts, payments, balance, payouts)."""
        key = (self.now, self._version)
        if self._stripe is None or self._stripe[0] != key:
            self._stripe = (key, build_stripe_world(world=self.world, orders=self.orders(), now=self.now))
        return self._stripe[1]

    # -- moving the clock ------------------------------------------------------------------------

    def advance(self, *, minutes: float, refunds: int = 0, disputes: int = 0, scans: int = 0) -> Changes:
        """Move the clock forward; reveal new sales, late refunds, disputes and scans."""
        if not 0 <= minutes <= MAX_ADVANCE_MINUTES:
            raise ValueError(f"minutes must be between 0 and {MAX_ADVANCE_MINUTES}")
        if min(refunds, disputes, scans) < 0 or refunds + disputes + scans > MAX_FORCED_CHANGES:
            raise ValueError(f"forced changes must be between 0 and {MAX_FORCED_CHANGES}")
        facts = self._facts()
        before = self.now
        after = before + round(minutes * 60)
        self.now = after
        self._advances += 1

        new_ids: list[str] = []
        while self._next_sale_at <= after:
            index = self._next_sale_index
            order = generate_order(self.world, index, purchase_at=self._next_sale_at)
            self._next_sale_index += 1
            self._next_sale_at += self._sale_gap()
            if order is None:
                continue
            self._overrides[index] = order
            self._later_orders.append(index)
            new_ids.append(order.id)
            for at in _fact_times(order):
                if at > order.purchase_at:
                    bisect.insort(facts, (at, index))

        new_indexes = set(self._later_orders[len(self._later_orders) - len(new_ids) :])
        touched: set[int] = set()
        low = bisect.bisect_right(facts, (before, MAX_INDEX))
        high = bisect.bisect_right(facts, (after, MAX_INDEX))
        touched.update(index for _, index in facts[low:high] if index not in new_indexes)
        rng = random.Random(f"advance:{self.seed}:{self._advances}")
        window = _Window(before, after)
        touched.update(self._force(rng, window=window, kind="refund", count=refunds, skip=new_indexes))
        touched.update(self._force(rng, window=window, kind="dispute", count=disputes, skip=new_indexes))
        touched.update(self._force(rng, window=window, kind="scan", count=scans, skip=new_indexes))
        updated = sorted(
            (
                order.id
                for order in map(self.order, touched)
                if order.updated_at(after) > order.updated_at(before)
            ),
        )
        if new_ids or updated:
            self._version += 1
        return Changes(now=iso_utc(after), new_ids=tuple(new_ids), updated_ids=tuple(updated))

    def add_order_paid_by(self, paid_order_id: str) -> Changes:
        """Reveal a new order, bought now and paid by the payment of a visible order.

        One Stripe payment may pay several orders (a checkout covering more than one event of a tour);
        tests use this to list a second order of a payment after the first one was handled.
        """
        paid = next((order for order in self.orders() if order.id == paid_order_id), None)
        if paid is None:
            raise KeyError(paid_order_id)
        # Indexes counted down from the top never meet the seeded and later sales counted up from 0.
        self._orders_paid_by_others += 1
        index = MAX_INDEX - self._orders_paid_by_others
        order = dataclasses.replace(
            paid,
            index=index,
            id=order_id(self.seed, index),
            ticket_id=f"{paid.ticket_id}-{self._orders_paid_by_others}",
            purchase_at=self.now,
            refund_at=None,
            refund_remark=None,
            dispute_at=None,
            ticket_scans=(),
            rescans=(),
        )
        self._overrides[index] = order
        self._later_orders.append(index)
        self._version += 1
        return Changes(now=self.now_iso, new_ids=(order.id,), updated_ids=())

    def _sale_gap(self) -> int:
        return max(1, round(self._sales_rng.expovariate(self.sales_per_hour / HOUR)))

    def _facts(self) -> list[tuple[int, int]]:
        # Built on the first advance only: reading a scenario never pays for it.
        if self._fact_index is None:
            facts = [
                (at, order.index) for order in self.orders() for at in _fact_times(order) if at > self.now
            ]
            facts.sort()
            self._fact_index = facts
        return self._fact_index

    def _random_visible(self, rng: random.Random) -> int:
        pick = rng.randrange(self.order_count())
        return pick if pick < self.initial_orders else self._later_orders[pick - self.initial_orders]

    def _force(
        self, rng: random.Random, *, window: _Window, kind: str, count: int, skip: set[int]
    ) -> set[int]:
        changed: set[int] = set()
        if count == 0 or self.order_count() == 0 or window.after <= window.before:
            return changed
        for _ in range(count * 20):
            if len(changed) >= count:
                break
            index = self._random_visible(rng)
            if index in changed or index in skip:
                continue
            order = self.order(index)
            starts_at = self.world.event(order.event_id).starts_at
            replaced = _forced_change(order, rng=rng, window=window, kind=kind, event_starts_at=starts_at)
            if replaced is not None:
                self._overrides[index] = replaced
                changed.add(index)
        return changed


def _fact_times(order: Order) -> tuple[int, ...]:
    times = [*order.ticket_scans, *order.rescans]
    if order.refund_at is not None:
        times.append(order.refund_at)
    if order.dispute_at is not None:
        times.append(order.dispute_at)
    return tuple(times)


class _Window(NamedTuple):
    before: int
    after: int


def _forced_change(
    order: Order, *, rng: random.Random, window: _Window, kind: str, event_starts_at: int
) -> Order | None:
    before, after = window
    at = rng.randrange(max(before, order.purchase_at) + 1, after + 1)
    refunded = order.refund_at is not None and order.refund_at <= before
    disputed = order.dispute_at is not None and order.dispute_at <= before
    if refunded or (disputed and kind != "scan"):
        return None
    if kind == "refund":
        # Scans already made stay on the record; later ones never happen.
        return dataclasses.replace(
            order,
            refund_at=at,
            refund_remark=rng.choice(catalog.REFUND_REMARKS),
            dispute_at=None,
            ticket_scans=tuple(s for s in order.ticket_scans if s <= before),
            rescans=tuple(s for s in order.rescans if s <= before),
        )
    if kind == "dispute":
        return (
            dataclasses.replace(order, dispute_at=at, refund_at=None, refund_remark=None)
            if order.payment_id
            else None
        )
    scanned = tuple(s for s in order.ticket_scans if s <= before)
    if event_starts_at > after or len(scanned) >= order.total_tickets:
        return None
    return dataclasses.replace(
        order, ticket_scans=(*scanned, at), rescans=tuple(s for s in order.rescans if s <= before)
    )
