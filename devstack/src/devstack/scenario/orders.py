# ruff: noqa: S311 - seeded, reproducible pseudo-randomness is the point; nothing here is a secret
"""One order from (seed, index): the same inputs always give the same order, in any sequence."""

from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from devstack.scenario import catalog
from devstack.scenario.ids import base62, scramble_40, scramble_64, seed_salt, stripe_id
from devstack.scenario.model import Event, Order, OrderLine, Organizer, ReferralCode, Route
from devstack.scenario.world import DAY, ROUTES, World, account_fragment

if TYPE_CHECKING:
    from collections.abc import Sequence

HOUR = 3_600
REFUND_RATE = 0.03
DISPUTE_RATE = 0.01
NO_SHOW_RATE = 0.12
RESCAN_RATE = 0.08
REFERRAL_RATE = 0.12
# Share of card payments that the export shows as a Charge id; half of those are legacy charges
# made without a PaymentIntent.
CHARGE_ID_RATE = 0.10
LOWERCASE_CODE_RATE = 0.10
BOX_OFFICE_CASH_RATE = 0.40
BOX_OFFICE_NO_EMAIL_RATE = 0.60
BOX_OFFICE_NO_PHONE_RATE = 0.50
ONLINE_NO_PHONE_RATE = 0.25
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
    return f"otx_{scramble_64(index, salt=seed_salt(seed, _SALT_ORDER)):016x}"


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


class _Payment(NamedTuple):
    route: Route | None
    account_id: str | None
    payment_intent_id: str | None
    charge_id: str | None
    payment_id: str


class _Aftermath(NamedTuple):
    refund_at: int | None
    refund_remark: str | None
    dispute_at: int | None
    ticket_scans: tuple[int, ...]
    rescans: tuple[int, ...]


def _buyer(world: World, rng: random.Random, *, box_office: bool) -> tuple[str, str, str]:
    name, email, phone = customer(world, rng.randrange(world.customer_pool))
    if box_office:
        email = "" if rng.random() < BOX_OFFICE_NO_EMAIL_RATE else email
        phone = "" if rng.random() < BOX_OFFICE_NO_PHONE_RATE else phone
    elif rng.random() < ONLINE_NO_PHONE_RATE:
        phone = ""
    return name, email, phone


def _referral(
    rng: random.Random, *, codes: tuple[ReferralCode, ...], source: str, subtotal: int
) -> tuple[ReferralCode | None, str | None, int]:
    if source != "online" or rng.random() >= REFERRAL_RATE:
        return None, None, 0
    code = rng.choice(codes)
    # Buyers type codes in any case; the dashboard matches them case-insensitively.
    shown = code.code.lower() if rng.random() < LOWERCASE_CODE_RATE else code.code
    raw = round(subtotal * code.discount / 100) if code.kind == "%" else code.discount * 100
    return code, shown, min(raw, subtotal // 2)


def _payment_method(rng: random.Random, *, source: str, box_office: bool) -> str:
    if source == "online":
        return _weighted(rng, _METHODS, _METHOD_CUM)
    if box_office:
        return "cash" if rng.random() < BOX_OFFICE_CASH_RATE else "card"
    return "card"


def _fees(
    *, total: int, tickets: int, box_office: bool, card: bool, tax_bp: int
) -> tuple[int, int, int, int]:
    platform_fee = 50 * tickets if box_office else round(total * 0.05) + 99 * tickets
    provider_fee = round(total * 0.029) + 30 if card else 0
    tax = round(total * tax_bp / (10_000 + tax_bp))
    platform_fee = max(0, min(platform_fee, total - provider_fee - tax))
    return platform_fee, provider_fee, tax, total - platform_fee - provider_fee - tax


def _payment(world: World, rng: random.Random, *, index: int, organizer: Organizer) -> _Payment:
    route = _weighted(rng, ROUTES, world.route_cum_weights[organizer.account_id])
    account_id = world.platform.id if route is not Route.DIRECT else organizer.account_id
    fragment = account_fragment(account_id)
    charge_id = stripe_id(
        prefix="ch", index=index, salt=seed_salt(world.seed, _SALT_CH), account_fragment=fragment, rng=rng
    )
    payment_intent_id: str | None = stripe_id(
        prefix="pi", index=index, salt=seed_salt(world.seed, _SALT_PI), account_fragment=fragment, rng=rng
    )
    roll = rng.random()
    if roll < CHARGE_ID_RATE / 2:
        return _Payment(route, account_id, None, charge_id, charge_id)
    if roll < CHARGE_ID_RATE:
        return _Payment(route, account_id, payment_intent_id, charge_id, charge_id)
    return _Payment(route, account_id, payment_intent_id, charge_id, payment_intent_id or "")


def _aftermath(rng: random.Random, *, event: Event, purchase_at: int, card: bool, tickets: int) -> _Aftermath:
    if rng.random() < REFUND_RATE:
        latest = event.starts_at - HOUR
        if latest > purchase_at + HOUR:
            # Refunded orders are never scanned: refunds close before the doors open.
            refund_at = rng.randrange(purchase_at + HOUR, latest)
            return _Aftermath(refund_at, rng.choice(catalog.REFUND_REMARKS), None, (), ())
    dispute_at = None
    if card and rng.random() < DISPUTE_RATE:
        dispute_at = purchase_at + rng.randrange(3 * DAY, 45 * DAY)
    ticket_scans, rescans = _scans(rng, event=event, purchase_at=purchase_at, tickets=tickets)
    return _Aftermath(None, None, dispute_at, ticket_scans, rescans)


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
    name, email, phone = _buyer(world, rng, box_office=box_office)
    lines = _lines(rng, event)
    tickets = sum(line.quantity for line in lines)
    subtotal = sum(line.quantity * line.unit_cents for line in lines)
    code, shown_code, discount = _referral(
        rng, codes=organizer.referral_codes, source=source, subtotal=subtotal
    )
    total = subtotal - discount
    method = _payment_method(rng, source=source, box_office=box_office)
    card = method != "cash"
    platform_fee, provider_fee, tax, organizer_amount = _fees(
        total=total, tickets=tickets, box_office=box_office, card=card, tax_bp=event.tax_rate_bp
    )
    payment = (
        _payment(world, rng, index=index, organizer=organizer)
        if card
        else _Payment(None, None, None, None, "")
    )
    after = _aftermath(rng, event=event, purchase_at=purchase_at, card=card, tickets=tickets)
    return Order(
        index=index,
        id=order_id(world.seed, index),
        event_id=event.id,
        ticket_id=f"TKT-{base62(scramble_40(index, salt=seed_salt(world.seed, _SALT_TICKET)), width=7)}",
        name=name,
        email=email,
        phone=phone,
        lines=lines,
        total_cents=total,
        purchase_at=purchase_at,
        purchase_from=source,
        payment_method=method,
        payment_id=payment.payment_id,
        referral_code=shown_code,
        referral_discount=code.discount if code else None,
        referral_discount_type=code.kind if code else None,
        platform_fee_cents=platform_fee,
        provider_fee_cents=provider_fee,
        tax_cents=tax,
        organizer_cents=organizer_amount,
        refund_at=after.refund_at,
        refund_remark=after.refund_remark,
        dispute_at=after.dispute_at,
        ticket_scans=after.ticket_scans,
        rescans=after.rescans,
        route=payment.route,
        account_id=payment.account_id,
        payment_intent_id=payment.payment_intent_id,
        charge_id=payment.charge_id,
    )
