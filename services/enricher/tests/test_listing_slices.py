"""A long charges listing goes on in slices of its ``created`` range at once, and misses nothing."""

from __future__ import annotations

import itertools

from world import DAY, T_NOW, Clock, enricher_for, facts_container, index_container, new_world

from enricher.findings import Findings
from enricher.indexer import SLICES_AT_MOST, Indexer, created_slices
from enricher.indexes import StripeIndex
from enricher.service import PaymentEnricher


def _contiguous(ranges: list[tuple[int | None, int]]) -> bool:
    """Each range ends (before, excluded) where the one before it began (after, excluded)."""
    return all(
        after is not None and older_before == after + 1
        for (after, _), (_, older_before) in itertools.pairwise(ranges)
    )


def test_the_rest_goes_back_in_slices_as_long_as_eight_pages_took_then_one_unbounded():
    # Eight pages took 800 s: eight slices of 800 s back from the oldest listed second (included),
    # then everything older in one.
    ranges = created_slices(newest=10_000, oldest=9_201, pages=8, after=None)
    assert len(ranges) == SLICES_AT_MOST + 1
    assert ranges[0] == (8_401, 9_202)
    assert ranges[-1] == (None, 9_202 - SLICES_AT_MOST * 800)
    assert _contiguous(ranges)


def test_slices_stop_at_the_listings_own_bound():
    # Listed from a cursor (created after 8,000): nothing older is asked for.
    ranges = created_slices(newest=10_000, oldest=9_201, pages=8, after=8_000)
    assert ranges == [(8_401, 9_202), (8_000, 8_402)]
    assert _contiguous(ranges)


async def test_a_long_platform_listing_is_listed_in_slices_at_once_and_indexes_every_charge():
    world = new_world(connected=0)
    world.stripe.page_size = 10
    charges = [world.charge_on(None, created=T_NOW - 2 * DAY - n * DAY)[0] for n in range(300)]
    clock = Clock()
    index = StripeIndex(index_container(), facts=facts_container())
    indexer = Indexer(gateway=world.stripe, index=index, clock=clock)
    enricher = PaymentEnricher(gateway=world.stripe, index=index, indexer=indexer, clock=clock)

    found = await enricher.enrich(charges[-1], requested_at=clock())  # the oldest: on the last page

    assert isinstance(found, Findings)
    assert found.charge_id == charges[-1]
    for charge_id in charges:
        assert await index.get(f"payment:{charge_id}") is not None, charge_id
    ranges = {(after, before) for account, after, before in world.stripe.charge_slices if account is None}
    assert len(ranges) == SLICES_AT_MOST + 1  # eight slices back from the eighth page, then the rest
    # In a row: 30 pages; each range costs at most one call more (a partly or wholly empty page).
    assert 30 <= world.stripe.calls.by_operation["charges.list"] <= 30 + len(ranges)
    # At once: every range asked its first page before any range asked its second.
    first_asks = world.stripe.charge_slices[: len(ranges)]
    assert len(set(first_asks)) == len(ranges)


async def test_a_listing_of_few_pages_is_listed_in_a_row():
    world = new_world(connected=0)
    world.stripe.page_size = 10
    charges = [world.charge_on(None, created=T_NOW - 2 * DAY - n * DAY)[0] for n in range(75)]
    clock = Clock()
    found = await enricher_for(world.stripe, clock).enrich(charges[-1], requested_at=clock())
    assert isinstance(found, Findings)
    assert world.stripe.charge_slices == []
    assert world.stripe.calls.by_operation["charges.list"] == 8
