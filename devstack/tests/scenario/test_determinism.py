"""A seed names one world in every version of the generator, byte for byte.

Tests elsewhere compare runs inside one process; these digests pin the world across code changes, so a
refactor of the generator cannot move a field, an id or a key. A change meant to alter the world
updates the digests in the same commit and says why (the Stripe digests last moved when about one
separate transfer in three began to be made hours after its charge).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from typing import TYPE_CHECKING

from devstack.scenario import Route, Scenario, StripeWorld, write_csv

if TYPE_CHECKING:
    from pathlib import Path

# Advancing to 02:00 three days on catches fresh payouts while they are still pending.
ADVANCE_MINUTES = (3 * 24 + 14) * 60

GOLDEN_SHA256 = {
    "export": "4d01e797eab46e603f68311f015872cd5eac534817dffe977c33ee994b0d6efd",
    "stripe": "cd3301ca6e7615a4ca5fbc83e23093303efd34183bd5ac1b13a4644c562859fe",
    "export after advance": "e9f0cb7a91388b758e886ef979ba19a409fd45e74f6b7a719be053f7c23498d2",
    "stripe after advance": "2ffb0c832c24f87013ffe9f91fd95deba4d37142e189682749920ca203f2ef2d",
}


def pinned_scenario() -> Scenario:
    return Scenario(seed=5, events=6, orders=200, organizers=3)


def advance(scenario: Scenario) -> None:
    scenario.advance(minutes=ADVANCE_MINUTES, refunds=3, disputes=3, scans=3)


def export_bytes(scenario: Scenario, path: Path) -> bytes:
    write_csv(path, scenario.transactions())
    return path.read_bytes()


def stripe_bytes(stripe: StripeWorld) -> bytes:
    # Key order is kept as built: a stand-in serves these dicts as they are.
    tables = {field.name: getattr(stripe, field.name) for field in dataclasses.fields(stripe)}
    tables["payments"] = {key: dataclasses.asdict(facts) for key, facts in stripe.payments.items()}
    return json.dumps(tables).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_seeded_scenario_matches_its_recorded_digests(tmp_path: Path) -> None:
    scenario = pinned_scenario()
    digests = {
        "export": sha256(export_bytes(scenario, tmp_path / "now.csv")),
        "stripe": sha256(stripe_bytes(scenario.stripe)),
    }
    advance(scenario)
    digests["export after advance"] = sha256(export_bytes(scenario, tmp_path / "later.csv"))
    digests["stripe after advance"] = sha256(stripe_bytes(scenario.stripe))
    assert digests == GOLDEN_SHA256


def test_the_pinned_scenario_has_every_kind_of_stripe_object() -> None:
    # The digests guard only what the pinned world contains, so it must contain every case.
    scenario = pinned_scenario()
    statuses = Counter(payout["status"] for payout in scenario.stripe.payouts.values())
    advance(scenario)
    stripe = scenario.stripe
    statuses.update(payout["status"] for payout in stripe.payouts.values())
    payments = stripe.payments.values()
    assert {facts.route for facts in payments} == set(Route)
    assert any(facts.payment_intent_id is None for facts in payments), "a legacy charge"
    assert stripe.refunds
    assert stripe.disputes
    assert {"pending", "in_transit", "paid", "failed"} <= set(statuses)
    made = {
        t["id"]: t["created"] - stripe.charges[t["source_transaction"]]["created"]
        for t in stripe.transfers.values()
    }
    assert 0 in made.values(), "a transfer made with its charge"
    assert any(delay > 0 for delay in made.values()), "a separate transfer made hours after its charge"
    assert any(not payout["automatic"] for payout in stripe.payouts.values()), "a manual payout"
