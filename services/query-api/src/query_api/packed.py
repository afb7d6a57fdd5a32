"""The served fields no query reads, held together as one JSON text per row.

A Polars text column costs a 16-byte view per row even where the value is null, and a categorical
4 bytes; most of these fields are null until the enricher or the webhook service fills them. Packed,
a row pays one view plus the JSON of its non-null values under short keys, and nothing is lost:
``unpacked`` gives back each field with the type and value it was loaded with.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from query_api.columns import DOCUMENT_SCHEMA, PACKED, PACKED_FIELDS

_KEYS: Final = {name: str(position) for position, name in enumerate(PACKED_FIELDS)}
"""Each packed field's key in the JSON: its position, so a row's text holds no field names."""

_DTYPE: Final = pl.Struct({_KEYS[name]: DOCUMENT_SCHEMA[name] for name in PACKED_FIELDS})


_NULL_MEMBER: Final = r'"\d+":null,?'
"""A member whose value is null. It cannot match inside a text value: Polars' writer escapes every
quote there, and a key's closing quote is followed by ``:`` where a text value's is not."""


def packed() -> pl.Expr:
    """The packed fields' non-null values as a JSON object (``PACKED``); null when all are null.

    The object is written by Polars' own JSON writer (escaped text, floats in their shortest form
    that reads back the same), so ``unpacked`` reads back exactly the values held before; its null
    members are then cut out (one struct written whole, then one pattern, is about a fifth of the
    time of writing each member alone).
    """
    written = pl.struct(pl.col(name).alias(key) for name, key in _KEYS.items()).struct.json_encode()
    # Cutting a null last member leaves its comma before the closing brace.
    members = written.str.replace_all(_NULL_MEMBER, "").str.replace(r",\}$", "}")
    return pl.when(members != "{}").then(members).alias(PACKED)


def unpacked(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with the packed fields back as columns of their own (their values as loaded)."""
    decoded = rows.with_columns(pl.col(PACKED).str.json_decode(_DTYPE))
    return decoded.with_columns(
        pl.col(PACKED).struct.field(key).alias(name) for name, key in _KEYS.items()
    ).drop(PACKED)
