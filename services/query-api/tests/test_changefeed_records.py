"""Reading the SDK's all-versions-and-deletes records and continuations."""

from __future__ import annotations

import base64
import json

from query_api.changefeed import FeedRecord, parse_records, single_range_lsn


def continuation(*tokens: str) -> str:
    state = {
        "v": "v2",
        "mode": "AllVersionsAndDeletes",
        "continuation": {
            "v": "v2",
            "continuation": [{"token": token, "range": {"min": "", "max": "FF"}} for token in tokens],
        },
    }
    return base64.b64encode(json.dumps(state).encode()).decode()


def test_a_continuation_of_one_range_stands_at_its_lsn_and_of_several_at_none():
    assert single_range_lsn(continuation('"42"')) == 42
    assert single_range_lsn(continuation('"42"', '"7"')) is None
    assert single_range_lsn("not base64 at all!") is None


def test_records_become_versions_and_deletions_and_malformed_ones_are_reported():
    raw = [
        {"current": {"id": "a", "eventId": "e", "_ts": 5}, "metadata": {"operationType": "create", "lsn": 3}},
        {
            "metadata": {
                "operationType": "delete",
                "lsn": 4,
                "crts": 6,
                "id": "a",
                "partitionKey": {"eventId": "e"},
            }
        },
        {"metadata": {"operationType": "replace", "lsn": 5}},
        {"current": {"id": "b"}},
    ]
    records, unreadable = parse_records(raw)

    assert records == [
        FeedRecord(
            lsn=3, operation="create", document_id="a", ts=5, document={"id": "a", "eventId": "e", "_ts": 5}
        ),
        FeedRecord(lsn=4, operation="delete", document_id="a", ts=6),
    ]
    assert [(u.lsn, u.reason.split(":")[0]) for u in unreadable] == [(5, "KeyError"), (None, "KeyError")]
