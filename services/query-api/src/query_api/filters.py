"""The filters every data endpoint accepts (SPEC section 3), as one row predicate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl

from otcommon.normalize import SourceBucket, normalize_referral_code, normalize_text, split_ticket_types
from query_api.columns import (
    PURCHASED_AT,
    REDEEMED_AT,
    TICKET_TYPES_TEXT,
    TICKET_TYPES_TEXT_DTYPE,
    TYPE_SEPARATOR,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

DateMode = Literal["purchase", "redemption"]

SOURCE_NAMES: dict[str, SourceBucket] = {"online": "online", "boxoffice": "boxoffice", "other": "other"}
"""The ``source`` values the API accepts, casefolded, and the stored bucket each selects."""


def source_bucket_of(value: str) -> SourceBucket:
    """The bucket a ``source`` value names (online, boxOffice, other; any case); ValueError otherwise."""
    try:
        return SOURCE_NAMES[value.strip().casefold()]
    except KeyError:
        raise ValueError("must be online, boxOffice or other") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionFilter:
    """A conjunction of filters; an empty tuple or None leaves that dimension open."""

    event_ids: tuple[str, ...] = ()
    date_from: datetime | None = None
    date_to: datetime | None = None
    date_mode: DateMode = "purchase"
    ticket_types: tuple[str, ...] = ()
    sources: tuple[SourceBucket, ...] = ()
    refunded: bool | None = None
    disputed: bool | None = None
    valid: bool | None = None
    referral_codes: tuple[str, ...] = ()
    search: str | None = None

    @classmethod
    def of(  # noqa: PLR0913 - one keyword per filter of the API
        cls,
        *,
        event_ids: Iterable[str] = (),
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        date_mode: DateMode = "purchase",
        ticket_types: Iterable[str] = (),
        sources: Iterable[str] = (),
        refunded: bool | None = None,
        disputed: bool | None = None,
        valid: bool | None = None,
        referral_codes: Iterable[str] = (),
        search: str | None = None,
    ) -> TransactionFilter:
        """Filters from the values a caller gave, normalized the way ingest stored them."""
        types = tuple(dict.fromkeys(t for value in ticket_types for t in split_ticket_types(value)))
        codes = tuple(dict.fromkeys(c for value in referral_codes if (c := normalize_referral_code(value))))
        return cls(
            event_ids=tuple(dict.fromkeys(event_ids)),
            date_from=date_from,
            date_to=date_to,
            date_mode=date_mode,
            ticket_types=types,
            sources=tuple(dict.fromkeys(source_bucket_of(value) for value in sources)),
            refunded=refunded,
            disputed=disputed,
            valid=valid,
            referral_codes=codes,
            search=normalize_text(search) or None,
        )

    def expression(self) -> pl.Expr:
        """The row predicate of these filters."""
        conditions: list[pl.Expr] = [pl.lit(value=True)]
        if self.event_ids:
            conditions.append(pl.col("eventId").is_in(list(self.event_ids)))
        conditions.extend(self._date_conditions())
        if self.ticket_types:
            conditions.append(
                pl.col(TICKET_TYPES_TEXT).is_in(_type_texts_with_any(self.ticket_types).implode())
            )
        if self.sources:
            conditions.append(pl.col("sourceBucket").is_in(list(self.sources)))
        for column, wanted_flag in (
            ("IsRefunded", self.refunded),
            ("IsDisputed", self.disputed),
            ("IsValid", self.valid),
        ):
            if wanted_flag is not None:
                conditions.append(pl.col(column) == wanted_flag)
        if self.referral_codes:
            conditions.append(pl.col("referralCodeNormalized").is_in(list(self.referral_codes)))
        if self.search:
            conditions.append(pl.col("searchText").str.contains(self.search, literal=True))
        return pl.all_horizontal(conditions)

    def _date_conditions(self) -> list[pl.Expr]:
        column = pl.col(PURCHASED_AT if self.date_mode == "purchase" else REDEEMED_AT)
        conditions = []
        if self.date_from is not None:
            conditions.append(column >= self.date_from)
        if self.date_to is not None:
            conditions.append(column < self.date_to)
        return [condition.fill_null(value=False) for condition in conditions]


def _type_texts_with_any(ticket_types: tuple[str, ...]) -> pl.Series:
    """The distinct ticket-type texts held that contain one of these types.

    The texts are a categorical with their own categories (every combination of types seen), so
    the types are looked for in those few texts and rows are then matched by category.
    """
    texts = pl.DataFrame({"text": TICKET_TYPES_TEXT_DTYPE.categories.to_series()})
    wanted = pl.col("text").str.contains
    return texts.filter(
        pl.any_horizontal(
            wanted(f"{TYPE_SEPARATOR}{name}{TYPE_SEPARATOR}", literal=True) for name in ticket_types
        )
    )["text"]
