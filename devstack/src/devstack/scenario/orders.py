"""One order from (seed, index): the same inputs always give the same order, in any sequence."""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Sequence
from itertools import accumulate
from typing import TypeVar

from devstack.scenario import catalog
from devstack.scenario.ids import base62, scramble_40, scramble_64, stripe_id
from devstack.scenario.model import Event, Order, OrderLine, Route
from devstack.scenario.world import DAY, ROUTES, World, account_fragment

HOUR = 3_600
REFUND_RATE = 0.03
DISPUTE_RATE = 0.01
NO_SHOW_RATE = 0.12
RESCAN_RATE = 0.08
REFERRAL_RATE = 0.12
# Share of card payments that the export shows as a Charge id; half of those are legacy charges
# made without a PaymentIntent.
CHARGE_ID_RATE = 0.10
MAX_INDEX = 1 << 40

_SOURCES = tuple(name for name, _ in catalog.PURCHASE_SOURCES)
_SOURCE_CUM = tuple(accumulate(weight for _, weight in catalog.PURCHASE_SOURCES))
_METHODS = tuple(name for name, _ in catalog.ONLINE_PAYMENT_METHODS)
_METHOD_CUM = tuple(accumulate(weight for _, weight in catalog.ONLINE_PAYMENT_METHODS))
_TYPE_WEIGHT = {name: weight for name, _, _, weight in catalog.TICKET_TYPES}
_QUANTITIES = (1, 2, 3, 4, 5, 6, 8)
_QUANTITY_CUM = tuple(accumulate((50, 30, 9, 6, 2, 2, 1)))
_T = TypeVar("_T")
_SALT_ORDER = 0x5EED_0000_0001
_SALT_TICKET = 0x0000_7C4E_7001
_SALT_PI = 0x00A1_B2C3_D4
_SALT_CH = 0x0071_8293_A4


def _weighted(rng: random.Random, items: Sequence[_T], cum_weights: Sequence[float]) -> _T:
    # random.choices rebuilds its tables on every call; this is the hot path of a million-row export.
    return items[bisect(cum_weights, rng.random() * cum_weights[-1])]


def order_rng(seed: int, index: int) -> random.Random:
    """The random stream that decides order `index` of `seed`."""
    return random.Random((seed * MAX_INDEX) + index)


def order_id(seed: int, index: int) -> str:
    """The stable source id of order `index`."""
    return f"otx_{scramble_64(index, salt=_SALT_ORDER + seed):016x}"


def customer(world: World, number: int) -> tuple[str, str, str]:
    """Name, email and phone of customer `number`; repeat buyers share all three."""
    mixed = scramble_64(number, salt=world.seed)
    first = catalog.FIRST_NAMES[mixed % len(catalog.FIRST_NAMES)]
    last = catalog.LAST_NAMES[(mixed >> 16) % len(catalog.LAST_NAMES)]
    local = f"{first}.{last}".lower().replace("'", "")
    email = f"{local}{number % 997}@example.com"
    phone = f"+1-{200 + (mixed >> 32) % 800:03d}-555-{number % 10_000:04d}"
    return f"{first} {last}", email, phone


def _pick_event(world: World, rng: random.Random, *, at: int | None) -> Event | None:
    if at is None:
        return _weighted(rng, world.events, world.event_cum_weights)
    # The box office keeps selling for an hour after the doors open.
    open_events = [
        (event, weight)
        for event, weight in zip(world.events, world.event_weights, strict=True)
        if event.on_sale_at <= at < event.starts_at + HOUR
    ]
    if not open_events:
        return None
    return rng.choices([e for e, _ in open_events], weights=[w for _, w in open_events])[0]


def _purchase_time(world: World, rng: random.Random, *, event: Event, box_office: bool) -> int:
    sales_end = min(event.starts_at, world.start)
    if box_office and event.starts_at <= world.start and rng.random() < 0.7:  # noqa: PLR2004
        return min(world.start, event.starts_at - 3 * HOUR + rng.randrange(3 * HOUR + HOUR // 2))
    span = max(1, sales_end - event.on_sale_at)
    roll = rng.random()
    if roll < 0.3:  # noqa: PLR2004 - the on-sale rush
        return event.on_sale_at + rng.randrange(min(span, 3 * DAY))
    if roll < 0.5:  # noqa: PLR2004 - the last week before the show
        week = min(span, 7 * DAY)
        return sales_end - week + rng.randrange(week)
    return event.on_sale_at + rng.randrange(span)


def _lines(rng: random.Random, event: Event) -> tuple[OrderLine, ...]:
    roll = rng.random()
    count = 1 if roll < 0.85 else (2 if roll < 0.97 else 3)  # noqa: PLR2004
    if count == 1:
        chosen = [_weighted(rng, event.ticket_types, event.type_cum_weights)]
    else:
        pool = list(event.ticket_types)
        chosen = []
        for _ in range(min(count, len(pool))):
            pick = rng.choices(pool, weights=[_TYPE_WEIGHT.get(t.name, 1) for t in pool])[0]
            pool.remove(pick)
            chosen.append(pick)
    return tuple(
        OrderLine(
            ticket_type=t.name,
            quantity=_weighted(rng, _QUANTITIES, _QUANTITY_CUM),
            unit_cents=t.price_cents,
        )
        for t in chosen
    )


def _scans(
    rng: random.Random, *, event: Event, purchase_at: int, tickets: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    doors = event.starts_at - 90 * 60
    scans: list[int] = []
    for _ in range(tickets):
        if rng.random() < NO_SHOW_RATE:
            continue
        # Most people arrive shortly before the show; a tail comes late.
        offset = int(rng.triangular(0, 3 * HOUR, HOUR))
        scans.append(max(purchase_at + 60, doors + offset))
    scans.sort()
    rescans: tuple[int, ...] = ()
    if scans and rng.random() < RESCAN_RATE:
        rescans = tuple(sorted(scans[0] + rng.randrange(60, 2 * HOUR) for _ in range(rng.randint(1, 2))))
    return tuple(scans), rescans


def generate_order(world: World, index: int, *, purchase_at: int | None = None) -> Order | None:
    """Order `index`; with `purchase_at`, a later sale (None when no event is on sale then)."""
    rng = order_rng(world.seed, index)
    event = _pick_event(world, rng, at=purchase_at)
    if event is None:
        return None
    organizer = world.organizers_by_id[event.organizer_id]
    source = _weighted(rng, _SOURCES, _SOURCE_CUM)
    box_office = source.lower() == "boxoffice"
    if purchase_at is None:
        purchase_at = _purchase_time(world, rng, event=event, box_office=box_office)

    name, email, phone = customer(world, rng.randrange(world.customer_pool))
    if box_office:
        email = "" if rng.random() < 0.6 else email  # noqa: PLR2004
        phone = "" if rng.random() < 0.5 else phone  # noqa: PLR2004
    elif rng.random() < 0.25:  # noqa: PLR2004
        phone = ""

    lines = _lines(rng, event)
    tickets = sum(line.quantity for line in lines)
    subtotal = sum(line.quantity * line.unit_cents for line in lines)

    referral_code = referral_discount = referral_type = None
    discount = 0
    if source == "online" and rng.random() < REFERRAL_RATE:
        code = rng.choice(organizer.referral_codes)
        referral_code = code.code.lower() if rng.random() < 0.1 else code.code  # noqa: PLR2004
        referral_discount, referral_type = code.discount, code.kind
        raw = round(subtotal * code.discount / 100) if code.kind == "%" else code.discount * 100
        discount = min(raw, subtotal // 2)
    total = subtotal - discount

    if source == "online":
        method = _weighted(rng, _METHODS, _METHOD_CUM)
    elif box_office:
        method = "cash" if rng.random() < 0.4 else "card"  # noqa: PLR2004
    else:
        method = "card"
    paid_by_stripe = method != "cash"

    platform_fee = round(total * 0.05) + 99 * tickets if not box_office else 50 * tickets
    provider_fee = round(total * 0.029) + 30 if paid_by_stripe else 0
    tax = round(total * event.tax_rate_bp / (10_000 + event.tax_rate_bp))
    platform_fee = max(0, min(platform_fee, total - provider_fee - tax))
    organizer_amount = total - platform_fee - provider_fee - tax

    route: Route | None = None
    account_id = payment_intent_id = charge_id = None
    payment_id = ""
    if paid_by_stripe:
        route = _weighted(rng, ROUTES, world.route_cum_weights[organizer.account_id])
        account_id = world.platform.id if route is not Route.DIRECT else organizer.account_id
        fragment = account_fragment(account_id)
        charge_id = stripe_id(prefix="ch", index=index, salt=_SALT_CH + world.seed, account_fragment=fragment, rng=rng)
        payment_intent_id = stripe_id(
            prefix="pi", index=index, salt=_SALT_PI + world.seed, account_fragment=fragment, rng=rng
        )
        roll = rng.random()
        if roll < CHARGE_ID_RATE / 2:
            payment_intent_id = None
            payment_id = charge_id
        elif roll < CHARGE_ID_RATE:
            payment_id = charge_id
        else:
            payment_id = payment_intent_id

    refund_at = refund_remark = dispute_at = None
    if rng.random() < REFUND_RATE:
        latest = event.starts_at - HOUR
        if latest > purchase_at + HOUR:
            refund_at = rng.randrange(purchase_at + HOUR, latest)
            refund_remark = rng.choice(catalog.REFUND_REMARKS)
    if refund_at is None and paid_by_stripe and rng.random() < DISPUTE_RATE:
        dispute_at = purchase_at + rng.randrange(3 * DAY, 45 * DAY)

    ticket_scans: tuple[int, ...] = ()
    rescans: tuple[int, ...] = ()
    if refund_at is None:
        ticket_scans, rescans = _scans(rng, event=event, purchase_at=purchase_at, tickets=tickets)

    return Order(
        index=index,
        id=order_id(world.seed, index),
        event_id=event.id,
        ticket_id=f"TKT-{base62(scramble_40(index, salt=_SALT_TICKET + world.seed), width=7)}",
        name=name,
        email=email,
        phone=phone,
        lines=lines,
        total_cents=total,
        purchase_at=purchase_at,
        purchase_from=source,
        payment_method=method,
        payment_id=payment_id,
        referral_code=referral_code,
        referral_discount=referral_discount,
        referral_discount_type=referral_type,
        platform_fee_cents=platform_fee,
        provider_fee_cents=provider_fee,
        tax_cents=tax,
        organizer_cents=organizer_amount,
        refund_at=refund_at,
        refund_remark=refund_remark,
        dispute_at=dispute_at,
        ticket_scans=ticket_scans,
        rescans=rescans,
        route=route,
        account_id=account_id,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
    )
