"""Turning stored transaction documents into read-model rows, refusing what cannot be counted.

The fast path hands a whole batch to Polars. A batch that does not fit the column types (a number
stored as text, say) is checked document by document, so each bad document is refused with the
field at fault and the rest of the batch still loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from otcommon.normalize import stable_id
from otcommon.served import STRIPE_DISPUTED_STATUSES, STRIPE_FACTS_PAYMENT_FIELD, STRIPE_REFUNDED_STATUSES
from query_api.columns import (
    BUYER,
    CATEGORICAL_FIELDS,
    CUSTOMER_ID,
    DEFAULTS,
    DOCUMENT_SCHEMA,
    FEES,
    PACKED_FIELDS,
    PURCHASE_QUARTER,
    PURCHASED_AT,
    QUARTER_HOUR_SECONDS,
    REDEEMED_AT,
    REQUIRED_FIELDS,
    TICKET_TYPES_TEXT,
    TICKET_TYPES_TEXT_DTYPE,
    TIMESTAMP_FORMAT,
    TYPE_SEPARATOR,
)
from query_api.packed import packed

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_PROBLEM = "_problem"
_TIMESTAMP_HINT = "expected a UTC timestamp like 2026-05-01T18:30:00.000Z"


@dataclass(frozen=True, slots=True)
class RejectedDocument:
    """A document the read model cannot count, and why (field names only: values may be personal)."""

    document_id: str | None
    reason: str


def to_rows(documents: Sequence[Mapping[str, Any]]) -> tuple[pl.DataFrame, list[RejectedDocument]]:
    """Rows with derived columns for the documents that can be counted; the others with reasons."""
    rejected: list[RejectedDocument] = []
    frame = _typed_frame(documents)
    if frame is None:
        fitting = []
        for document in documents:
            problem = _type_problem(document)
            if problem is None:
                fitting.append(document)
            else:
                rejected.append(RejectedDocument(_document_id(document), problem))
        frame = _typed_frame(fitting)
    if frame is None:  # pragma: no cover - every document left has been checked field by field
        raise AssertionError("documents that passed the field checks did not load")
    frame = _with_derived(frame).with_columns(_problem())
    bad = frame.filter(pl.col(_PROBLEM).is_not_null())
    rejected.extend(
        RejectedDocument(document_id, reason)
        for document_id, reason in zip(bad["id"].to_list(), bad[_PROBLEM].to_list(), strict=True)
    )
    return _compact(frame.filter(pl.col(_PROBLEM).is_null()).drop(_PROBLEM)), rejected


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """Few-valued text as categoricals (``CATEGORICAL_FIELDS``), ticket types as a list of them, the
    ``_etag`` as a 64-bit hash (it is only compared for equality, never served), and the fields only
    a served row shows packed into one column (``PACKED_FIELDS``)."""
    return frame.with_columns(
        pl.col(CATEGORICAL_FIELDS).cast(pl.Categorical()),
        pl.col("ticketTypeList").cast(pl.List(pl.Categorical())),
        pl.col("_etag").hash(),
        pl.col(TICKET_TYPES_TEXT).cast(TICKET_TYPES_TEXT_DTYPE),
        packed(),
    ).drop(PACKED_FIELDS)


def _typed_frame(documents: Sequence[Mapping[str, Any]]) -> pl.DataFrame | None:
    """The batch with the schema's columns, or None if a column holds a value of another type.

    Each column is built from its values after checking their Python types (the checks of
    ``_fits``), because loading with a schema would quietly turn "12" into False for a flag or
    2.5 into 2 for a count. Built column by column, a page of documents loads about ten times
    faster than through row-wise inference.
    """
    if not documents:
        return pl.DataFrame(schema=DOCUMENT_SCHEMA)
    columns: list[pl.Series] = []
    for name, dtype in DOCUMENT_SCHEMA.items():
        values = [document.get(name) for document in documents]
        column = _typed_column(name, values, dtype)
        if column is None:
            return None
        columns.append(column)
    return pl.DataFrame(columns)


_ALLOWED_TYPES: Final[dict[type[pl.DataType], frozenset[type]]] = {
    pl.String: frozenset({str, type(None)}),
    pl.Boolean: frozenset({bool, type(None)}),
    pl.Int64: frozenset({int, type(None)}),
    pl.Float64: frozenset({int, float, type(None)}),
    pl.List: frozenset({list, type(None)}),
}
_LIST_SEPARATOR: Final = "\x1f"


def _typed_column(name: str, values: list[Any], dtype: pl.DataType) -> pl.Series | None:
    """One column from its values; None when a value is not of the column's type."""
    found = set(map(type, values))
    if not found <= _ALLOWED_TYPES[type(dtype)]:
        return None
    if found <= {type(None)}:
        # An absent field: Polars builds a typed all-null column from a list slowly.
        return pl.Series(name, [], dtype=dtype).extend_constant(None, len(values))
    if isinstance(dtype, pl.Int64) and not all(
        -(2**63) < value < 2**63 for value in values if value is not None
    ):
        return None
    if isinstance(dtype, pl.List):
        return _text_lists(name, values)
    column = pl.Series(name, values, dtype=dtype, strict=False)
    if isinstance(dtype, pl.Float64) and (
        not column.is_finite().all() or column.null_count() != values.count(None)
    ):
        # NaN, infinity, or a whole number past every float (which Polars makes null): no JSON number.
        return None
    return column


def _text_lists(name: str, values: list[list[Any] | None]) -> pl.Series | None:
    """A list-of-text column, built by splitting joined text (building list by list is slow)."""
    items = [item for value in values if value for item in value]
    if not all(type(item) is str and _LIST_SEPARATOR not in item for item in items):
        return None
    parts = pl.DataFrame(
        {
            "joined": [_LIST_SEPARATOR.join(value) if value else "" for value in values],
            "length": [len(value) if value else 0 for value in values],
        }
    )
    empty = pl.lit([], dtype=pl.List(pl.String()))
    split = pl.col("joined").str.split(_LIST_SEPARATOR)
    return parts.select(pl.when(pl.col("length") == 0).then(empty).otherwise(split).alias(name)).to_series()


def _document_id(document: Mapping[str, Any]) -> str | None:
    value = document.get("id")
    return value if isinstance(value, str) else None


def _type_problem(document: Mapping[str, Any]) -> str | None:
    for field, dtype in DOCUMENT_SCHEMA.items():
        value = document.get(field)
        if value is not None and not _fits(value, dtype):
            return f"{field}: expected {_describe(dtype)}"
    return None


def _describe(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.String):
        return "text"
    if isinstance(dtype, pl.Boolean):
        return "true or false"
    if isinstance(dtype, pl.Int64):
        return "a whole number"
    if isinstance(dtype, pl.Float64):
        return "a number"
    return "a list of text"


def _fits(value: Any, dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.String):
        return isinstance(value, str)
    if isinstance(dtype, pl.Boolean):
        return isinstance(value, bool)
    if isinstance(dtype, pl.Int64):
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    if isinstance(dtype, pl.Float64):
        return isinstance(value, int | float) and not isinstance(value, bool) and _is_finite(value)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # a whole number beyond every float
        return False


def _instant(column: str) -> pl.Expr:
    return pl.col(column).str.strptime(pl.Datetime("ms", "UTC"), TIMESTAMP_FORMAT, strict=False)


def _with_derived(frame: pl.DataFrame) -> pl.DataFrame:
    filled = frame.with_columns(
        *(
            pl.col(name).fill_null(pl.lit(value, dtype=DOCUMENT_SCHEMA[name]))
            for name, value in DEFAULTS.items()
        ),
        pl.col("ticketTypeList").fill_null(pl.lit([], dtype=pl.List(pl.String()))),
        pl.col("_ts").fill_null(0),
    )
    derived = filled.with_columns(
        *_served_flags(),
        _instant("PurchaseDate").alias(PURCHASED_AT),
        _instant("TicketRedemptionDateTime").alias(REDEEMED_AT),
        (pl.col("PlatformFee") + pl.col("PaymentProviderFee") + pl.col("TaxFee")).alias(FEES),
        pl.format(
            "{}{}{}",
            pl.lit(TYPE_SEPARATOR),
            pl.col("ticketTypeList").list.join(TYPE_SEPARATOR),
            pl.lit(TYPE_SEPARATOR),
        ).alias(TICKET_TYPES_TEXT),
        pl.Series(CUSTOMER_ID, _customer_ids(filled), dtype=pl.String()),
    )
    return derived.with_columns(
        (pl.col(PURCHASED_AT).dt.epoch("s") // QUARTER_HOUR_SECONDS).alias(PURCHASE_QUARTER),
        pl.col(CUSTOMER_ID).str.to_integer(base=16, dtype=pl.UInt128).alias(BUYER),
    )


def _served_flags() -> tuple[pl.Expr, pl.Expr]:
    """IsRefunded / IsDisputed as served: the source's flag or Stripe's fact about the current payment.

    The same rule as ``otcommon.served`` (which the webhook service and the tests use), as column
    expressions: a row holds the served flags, so metrics, filters, tables and the stream agree.
    """
    has_payment = pl.col("PaymentID").str.len_chars() > 0
    current = (has_payment & (pl.col("PaymentID") == pl.col(STRIPE_FACTS_PAYMENT_FIELD))).fill_null(
        value=False
    )
    refunded = pl.col("stripeRefundStatus").is_in(sorted(STRIPE_REFUNDED_STATUSES)).fill_null(value=False)
    disputed = pl.col("stripeDisputeStatus").is_in(sorted(STRIPE_DISPUTED_STATUSES)).fill_null(value=False)
    return (
        (pl.col("IsRefunded") | (refunded & current)).alias("IsRefunded"),
        (pl.col("IsDisputed") | (disputed & current)).alias("IsDisputed"),
    )


def _customer_ids(frame: pl.DataFrame) -> list[str]:
    # A buyer with no name, email or phone is a customer of one order rather than merged with others.
    keys = frame["customerKey"].to_list()
    ids = frame["id"].to_list()
    return [
        stable_id(key) if key else stable_id("order", str(order))
        for key, order in zip(keys, ids, strict=True)
    ]


def _problem() -> pl.Expr:
    checks = [(pl.col(name).is_null(), f"{name}: missing") for name in REQUIRED_FIELDS]
    checks.append((pl.col(PURCHASED_AT).is_null(), f"PurchaseDate: {_TIMESTAMP_HINT}"))
    checks.append(
        (
            pl.col("TicketRedemptionDateTime").is_not_null() & pl.col(REDEEMED_AT).is_null(),
            f"TicketRedemptionDateTime: {_TIMESTAMP_HINT}",
        )
    )
    problem: pl.Expr = pl.lit(None, dtype=pl.String())
    for condition, reason in reversed(checks):
        problem = pl.when(condition).then(pl.lit(reason)).otherwise(problem)
    return problem.alias(_PROBLEM)
