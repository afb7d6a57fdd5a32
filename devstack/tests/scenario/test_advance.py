"""Advancing the clock: new sales, late refunds and new scans, each with a newer updatedAt."""

from __future__ import annotations

from datetime import datetime

import pytest

from devstack.scenario import Scenario


def _by_id(scenario: Scenario) -> dict[str, dict]:
    return {row["id"]: row for row in scenario.transactions()}


def test_advance_changes_only_some_rows_and_bumps_their_updated_at() -> None:
    scenario = Scenario(seed=21, events=5, orders=2_000, sales_per_hour=30)
    before = _by_id(scenario)
    old_now = scenario.now_iso
    changes = scenario.advance(minutes=6 * 60, refunds=5, disputes=2, scans=4)
    after = _by_id(scenario)

    assert changes.now == scenario.now_iso > old_now
    assert changes.new_ids
    assert set(after) == set(before) | set(changes.new_ids)
    assert set(changes.new_ids).isdisjoint(before)
    assert len(changes.updated_ids) >= 5
    assert len(changes.updated_ids) < len(before) / 10
    for order_id, row in after.items():
        if order_id in changes.updated_ids:
            assert old_now < row["updatedAt"] <= changes.now
            assert row["updatedAt"] > before[order_id]["updatedAt"]
        elif order_id in changes.new_ids:
            assert old_now < row["PurchaseDate"] == row["updatedAt"] <= changes.now
        else:
            assert row == before[order_id]


def test_forced_refunds_disputes_and_scans_are_visible() -> None:
    scenario = Scenario(seed=22, events=5, orders=1_500)
    before = _by_id(scenario)
    changes = scenario.advance(minutes=30, refunds=6)
    after = _by_id(scenario)
    newly_refunded = [
        i for i in changes.updated_ids if after[i]["IsRefunded"] and not before[i]["IsRefunded"]
    ]
    assert len(newly_refunded) == 6
    for order_id in newly_refunded:
        assert not after[order_id]["IsValid"]
        assert after[order_id]["RefundedRemarks"]

    changes = scenario.advance(minutes=30, disputes=3, scans=3)
    later = _by_id(scenario)
    disputed = [i for i in changes.updated_ids if later[i]["IsDisputed"] and not after[i]["IsDisputed"]]
    scanned = [i for i in changes.updated_ids if later[i]["TotalScanCount"] > after[i]["TotalScanCount"]]
    assert len(disputed) == 3
    assert len(scanned) == 3
    for order_id in scanned:
        row = later[order_id]
        assert row["TotalTicketRedeemed"] <= row["TotalTickets"]
        assert row["TicketWasLastScannedTime"] == row["updatedAt"]


def test_time_passing_an_event_reveals_its_scans() -> None:
    scenario = Scenario(seed=23, events=6, orders=1_500)
    now = datetime.fromisoformat(scenario.now_iso)
    upcoming = min(
        (e for e in scenario.events() if datetime.fromisoformat(e["startsAt"]) > now),
        key=lambda e: e["startsAt"],
    )
    assert not any(r["TotalScanCount"] for r in scenario.transactions(event_id=upcoming["id"]))
    minutes = (datetime.fromisoformat(upcoming["startsAt"]) - now).total_seconds() / 60 + 6 * 60
    changes = scenario.advance(minutes=minutes)
    rows = {r["id"]: r for r in scenario.transactions(event_id=upcoming["id"])}
    scanned = [r for r in rows.values() if r["TotalScanCount"]]
    assert len(scanned) > len(rows) / 2
    assert {r["id"] for r in scanned} <= set(changes.changed_ids)


def test_advance_is_deterministic_and_path_independent() -> None:
    one = Scenario(seed=24, orders=800, sales_per_hour=20)
    two = Scenario(seed=24, orders=800, sales_per_hour=20)
    one.advance(minutes=90)
    one.advance(minutes=150)
    two.advance(minutes=240)
    assert list(one.transactions()) == list(two.transactions())

    three = Scenario(seed=24, orders=800, sales_per_hour=20)
    four = Scenario(seed=24, orders=800, sales_per_hour=20)
    assert three.advance(minutes=60, refunds=4, scans=2) == four.advance(minutes=60, refunds=4, scans=2)
    assert list(three.transactions()) == list(four.transactions())


def test_advance_by_zero_changes_nothing() -> None:
    scenario = Scenario(seed=25, orders=300)
    before = list(scenario.transactions())
    changes = scenario.advance(minutes=0, refunds=3)
    assert changes.changed_ids == ()
    assert list(scenario.transactions()) == before


@pytest.mark.parametrize("minutes", [-1, 10**9])
def test_advance_rejects_out_of_range_minutes(minutes: int) -> None:
    with pytest.raises(ValueError, match="minutes"):
        Scenario(orders=10).advance(minutes=minutes)
