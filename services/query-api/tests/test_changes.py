"""The kind of a change is judged from the served row before and after it."""

from __future__ import annotations

import json

import pytest

from query_api.changes import ChangeKind, change_event, change_kind

BEFORE = {"id": "tx1", "eventId": "a", "IsRefunded": False, "IsDisputed": False, "TotalAmount": 10.0}


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (None, BEFORE, ChangeKind.SALE),
        (BEFORE, None, ChangeKind.REMOVAL),
        (BEFORE, {**BEFORE, "IsRefunded": True, "RefundedRemarks": "asked"}, ChangeKind.REFUND),
        (BEFORE, {**BEFORE, "IsDisputed": True}, ChangeKind.DISPUTE),
        (
            BEFORE,
            {**BEFORE, "stripeRouteType": "connected", "enrichmentState": "enriched"},
            ChangeKind.ENRICHMENT,
        ),
        (BEFORE, {**BEFORE, "TotalAmount": 12.0, "stripeNetAmount": 11.0}, ChangeKind.UPDATE),
        ({**BEFORE, "IsRefunded": True}, BEFORE, ChangeKind.UPDATE),
        (BEFORE, dict(BEFORE), None),
        (None, None, None),
    ],
)
def test_change_kind(old, new, kind):
    assert change_kind(old, new) == kind


def test_an_event_carries_the_kind_the_fields_and_the_new_row():
    event = change_event(position=7, old=BEFORE, new={**BEFORE, "IsRefunded": True})
    assert event is not None
    assert (event.position, event.event_id) == (7, "a")
    assert json.loads(event.data) == {
        "kind": "refund",
        "id": "tx1",
        "eventId": "a",
        "changed": ["IsRefunded"],
        "transaction": {**BEFORE, "IsRefunded": True},
    }


def test_nothing_served_changed_is_no_event():
    assert change_event(position=7, old=BEFORE, new=dict(BEFORE)) is None
