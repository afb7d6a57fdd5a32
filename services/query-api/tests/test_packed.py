"""The fields packed into one JSON text per row read back exactly as they were loaded."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from query_api.columns import DOCUMENT_SCHEMA, PACKED, PACKED_FIELDS
from query_api.packed import packed, unpacked

# Text that looks like the JSON around it: quotes, escapes, keys and nulls inside a value.
TRICKY = ('"', "\\", '"3":null,', ',"31":null}', ":null", "{}", ",}", "\n", "\x1f", "é中😀", "0")


def value_of(dtype: pl.DataType) -> st.SearchStrategy[Any]:
    if isinstance(dtype, pl.Int64):
        return st.none() | st.integers(-(2**63) + 1, 2**63 - 1)
    if isinstance(dtype, pl.Float64):
        return st.none() | st.floats(allow_nan=False, allow_infinity=False)
    pieces = st.lists(st.sampled_from(TRICKY) | st.text(max_size=5), max_size=4).map("".join)
    return st.none() | pieces


ROWS = st.lists(
    st.fixed_dictionaries({name: value_of(DOCUMENT_SCHEMA[name]) for name in PACKED_FIELDS}),
    min_size=1,
    max_size=8,
)


def frame_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={name: DOCUMENT_SCHEMA[name] for name in PACKED_FIELDS})


@settings(max_examples=40, deadline=None)
@given(rows=ROWS)
def test_packed_fields_read_back_with_their_values_and_types(rows):
    original = frame_of(rows)
    held = original.with_columns(packed()).drop(PACKED_FIELDS)
    assert held.columns == [PACKED]

    back = unpacked(held).select(PACKED_FIELDS)

    assert back.schema == original.schema
    # As the API serves them: the same JSON byte for byte (-0.0 stays -0.0, 1.0 stays 1.0).
    assert json.dumps(back.to_dicts()) == json.dumps(original.to_dicts())


@settings(max_examples=25, deadline=None)
@given(rows=ROWS)
def test_only_non_null_values_are_written(rows):
    texts = frame_of(rows).select(packed())[PACKED].to_list()

    for row, text in zip(rows, texts, strict=True):
        present = [name for name in PACKED_FIELDS if row[name] is not None]
        if not present:
            assert text is None
        else:
            assert len(json.loads(text)) == len(present)
            assert None not in json.loads(text).values()
