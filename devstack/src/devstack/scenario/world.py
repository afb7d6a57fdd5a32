# ruff: noqa: S311 - seeded, reproducible pseudo-randomness is the point; nothing here is a secret
"""Organizers, the platform account, tours and events of one seeded world."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

from devstack.scenario import catalog
from devstack.scenario.ids import random_base62
from devstack.scenario.model import Event, Organizer, ReferralCode, Route, TicketType

DAY = 86_400
# Sales open this long before each show; long enough that every event is on sale at the scenario start.
SALES_WINDOW_DAYS = 100
# Events start between 60 days before and 40 days after the scenario start, so some have been scanned.
FIRST_EVENT_OFFSET_DAYS = -60
EVENT_SPAN_DAYS = 100

# Route mixes (platform, destination, separate transfer, direct) cycled over organizers, so every route
# occurs. Separate transfers take their share from destination charges, next to them in `ROUTES`: both
# charge on the platform, so the export (whose charge ids name the owning account) is unchanged by them.
_ROUTE_MIXES: tuple[tuple[int, int, int, int], ...] = ((15, 50, 35, 0), (10, 0, 0, 90), (20, 25, 15, 40))


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """What Stripe knows about an account's name; some fields are missing on purpose."""

    id: str
    business_name: str | None
    display_name: str | None
    email: str | None
    country: str = "US"


@dataclass(frozen=True, slots=True)
class World:
    """The fixed part of a scenario: who sells what, where and when."""

    seed: int
    start: int
    platform: AccountProfile
    organizers: tuple[Organizer, ...]
    accounts: tuple[AccountProfile, ...]
    events: tuple[Event, ...]
    event_weights: tuple[float, ...]
    event_cum_weights: tuple[float, ...]
    route_cum_weights: dict[str, tuple[int, ...]] = field(repr=False)
    organizers_by_id: dict[str, Organizer] = field(repr=False)
    events_by_id: dict[str, Event] = field(repr=False)
    customer_pool: int = 1

    def event(self, event_id: str) -> Event:
        """The event with this id."""
        return self.events_by_id[event_id]

    def organizer(self, organizer_id: str) -> Organizer:
        """The organizer with this id."""
        return self.organizers_by_id[organizer_id]


def account_fragment(account_id: str) -> str:
    """The part of an account id that Stripe repeats inside the ids of that account's objects."""
    return account_id[-10:]


def _account_id(rng: random.Random) -> str:
    return f"acct_1{random_base62(rng, width=15)}"


def _local_evening(*, day: datetime, tz: ZoneInfo, hour: int, minute: int) -> int:
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    return int(local.timestamp())


def _ticket_types(rng: random.Random) -> tuple[tuple[TicketType, ...], tuple[int, ...]]:
    general, *others = catalog.TICKET_TYPES
    picked = [general, *rng.sample(others, k=rng.randint(1, 3))]
    types = tuple(
        TicketType(name=name, price_cents=rng.randrange(low, high + 1, 500)) for name, low, high, _ in picked
    )
    return types, tuple(accumulate(weight for *_, weight in picked))


def _referral_codes(rng: random.Random, *, prefix: str) -> tuple[ReferralCode, ...]:
    return (
        ReferralCode(code=f"{prefix}10", discount=10, kind="%"),
        ReferralCode(code="RADIO15", discount=15, kind="%"),
        ReferralCode(code=f"SAVE{rng.choice((5, 10))}", discount=rng.choice((5, 10)), kind="$"),
        ReferralCode(code="FRIENDS20", discount=20, kind="$"),
    )


def build_world(*, seed: int, events: int, organizers: int, orders: int, start: datetime) -> World:
    """Create the organizers, accounts and events for `seed`."""
    rng = random.Random(f"world:{seed}")
    start_ts = int(start.timestamp())
    platform = AccountProfile(
        id=_account_id(rng),
        business_name="OpenTickets",
        display_name="OpenTickets Platform",
        email="payments@opentickets.example",
    )
    organizer_list: list[Organizer] = []
    accounts: list[AccountProfile] = []
    route_mix: dict[str, tuple[int, int, int, int]] = {}
    for number in range(organizers):
        name = catalog.ORGANIZER_NAMES[number % len(catalog.ORGANIZER_NAMES)]
        if number >= len(catalog.ORGANIZER_NAMES):
            name = f"{name} {number // len(catalog.ORGANIZER_NAMES) + 1}"
        account_id = _account_id(rng)
        organizer_id = f"org_{random_base62(rng, width=10)}"
        # Every third account lacks a business name and every fifth also a display name, so the
        # enricher's name fallbacks (display name, then email, then id) are exercised.
        accounts.append(
            AccountProfile(
                id=account_id,
                business_name=None if number % 3 == 1 else name,
                display_name=None if number % 5 == 4 else f"{name} (dashboard)",  # noqa: PLR2004
                email=f"finance+{number}@organizer.example",
            )
        )
        organizer_list.append(
            Organizer(
                id=organizer_id,
                name=name,
                account_id=account_id,
                manual_payouts=number % 3 == 2,  # noqa: PLR2004 - one organizer in three pays out by hand
                referral_codes=_referral_codes(rng, prefix=name.split()[0].upper()),
            )
        )
        route_mix[account_id] = _ROUTE_MIXES[number % len(_ROUTE_MIXES)]

    event_list: list[Event] = []
    seen_names: set[str] = set()
    first_day = start_ts + FIRST_EVENT_OFFSET_DAYS * DAY
    for number in range(events):
        organizer = organizer_list[number % organizers]
        organizer_number = number % organizers
        tour = catalog.TOUR_NAMES[organizer_number % len(catalog.TOUR_NAMES)]
        city, venue, tz_name, tax_bp = catalog.CITIES[
            (organizer_number * 5 + number // organizers) % len(catalog.CITIES)
        ]
        fraction = (number + 0.5) / events
        approx = first_day + int(fraction * EVENT_SPAN_DAYS * DAY) + rng.randint(-DAY // 2, DAY // 2)
        tz = ZoneInfo(tz_name)
        local_day = datetime.fromtimestamp(approx, tz=UTC).astimezone(tz)
        starts_at = _local_evening(
            day=local_day, tz=tz, hour=rng.choice((19, 20)), minute=rng.choice((0, 30))
        )
        on_sale_day = local_day - timedelta(days=SALES_WINDOW_DAYS)
        on_sale_at = _local_evening(day=on_sale_day, tz=tz, hour=10, minute=0)
        name = f"{tour} - {city}"
        suffix = 2
        while name in seen_names:
            name = f"{tour} - {city} #{suffix}"
            suffix += 1
        seen_names.add(name)
        ticket_types, type_cum_weights = _ticket_types(rng)
        event_list.append(
            Event(
                id=f"ev_{random_base62(rng, width=12)}",
                name=name,
                tour_name=tour,
                city=city,
                venue=venue,
                time_zone=tz_name,
                starts_at=starts_at,
                on_sale_at=on_sale_at,
                tax_rate_bp=tax_bp,
                organizer_id=organizer.id,
                ticket_types=ticket_types,
                type_cum_weights=type_cum_weights,
            )
        )
    weights = tuple(rng.uniform(0.5, 1.5) for _ in event_list)
    return World(
        seed=seed,
        start=start_ts,
        platform=platform,
        organizers=tuple(organizer_list),
        accounts=tuple(accounts),
        events=tuple(event_list),
        event_weights=weights,
        event_cum_weights=tuple(accumulate(weights)),
        route_cum_weights={key: tuple(accumulate(mix)) for key, mix in route_mix.items()},
        organizers_by_id={organizer.id: organizer for organizer in organizer_list},
        events_by_id={event.id: event for event in event_list},
        customer_pool=max(20, orders * 2 // 3),
    )


ROUTES: tuple[Route, ...] = (Route.PLATFORM, Route.DESTINATION, Route.SEPARATE_TRANSFER, Route.DIRECT)
