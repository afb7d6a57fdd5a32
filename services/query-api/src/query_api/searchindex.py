"""A trigram index of the rows' search text, so a search (``q``) tests only the rows that can match.

The read model numbers rows as they arrive (``columns.SEARCH_KEY``; a replaced row arrives again
under a new key, and its old key dies). Keys are indexed in segments of consecutive keys: for each
three-character piece of text ("gram") a segment lists, as 2-byte offsets, the keys whose text
holds it. A text of three characters or more can only be held by a key listed under each of its
grams, so the keys listed under all of them are the candidates, and only their rows are tested
with the exact substring test. Grams held by more than ``common_share`` of a segment's keys
("@example.com" in every email) are not listed: they would narrow little and cost most of the
memory; a question made only of such grams reads the whole segment.

Keys newer than the last full segment are not indexed yet and are always candidates (fewer than
one segment of rows is tested). A segment whose keys have mostly died is built again from its live
rows, so dead keys never take more than half of a segment's lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import polars as pl

from query_api.columns import SEARCH_KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

SEGMENT_KEYS: Final = 65_536
"""Keys per segment: the most a 2-byte offset can name."""

COMMON_SHARE: Final = 0.25
"""A gram held by more than this share of a segment's keys is not listed (see the module's note)."""

LONGEST_INDEXED_TEXT: Final = 256
"""A row's text longer than this (characters) is not split into grams; its key is always a candidate."""

GRAM_LENGTH: Final = 3

_LISTS_INTERSECTED: Final = 3

_SEARCH_TEXT: Final = "searchText"
_FIELD_SEPARATOR: Final = "\n"
"""Between the fields of a search text; a search never holds it, so grams across it are not listed."""


@dataclass(frozen=True, slots=True)
class _Segment:
    """The lists of the keys in ``[base, base + segment_keys)`` live when it was built."""

    base: int
    built_from: int  # live keys when built: the segment is rebuilt when half of them have died
    directory: pl.DataFrame  # gram (sorted, distinct), start and end of its offsets in ``offsets``
    offsets: pl.Series  # key - base, sorted within each gram
    common: frozenset[int]  # grams held by too many keys to list
    unsplit: pl.Series  # keys whose text is too long to split: always candidates

    def listing(self) -> pl.DataFrame:
        """Its grams with the segment's base: listed ones with their offsets' bounds, common ones flagged."""
        listed = self.directory.with_columns(pl.lit(value=False).alias("common"))
        common = pl.DataFrame(
            {"gram": sorted(self.common), "start": 0, "end": 0, "common": True},
            schema=listed.schema,
        )
        return pl.concat([listed, common]).with_columns(pl.lit(self.base, dtype=pl.UInt32).alias("base"))


class SearchIndex:
    """Candidate keys for a search text, over the keys below ``key_end`` (see the module's note).

    ``texts_between(low, high)`` answers the live rows with keys in ``[low, high)``: their
    ``SEARCH_KEY`` and ``searchText``. The index reads it to build a segment.
    """

    def __init__(
        self,
        texts_between: Callable[[int, int], pl.DataFrame],
        *,
        segment_keys: int = SEGMENT_KEYS,
        common_share: float = COMMON_SHARE,
    ) -> None:
        if not 0 < segment_keys <= SEGMENT_KEYS:
            raise ValueError(f"segment_keys must be between 1 and {SEGMENT_KEYS}")
        self._texts_between = texts_between
        self._segment_keys = segment_keys
        self._common_share = common_share
        self._segments: dict[int, _Segment] = {}  # by base
        self._dead: dict[int, int] = {}  # keys died per segment base since it was built
        self._indexed_end = 0  # keys below this are in segments (or dead)
        self._key_end = 0
        # Every segment's grams (``_Segment.listing``), sorted by gram; None without segments.
        self._listing: pl.DataFrame | None = None
        self.build_seconds = 0.0
        """Time spent building segments so far (reported by the benchmark)."""

    @property
    def indexed_end(self) -> int:
        """Keys from here on are not indexed yet: always candidates."""
        return self._indexed_end

    def postings(self) -> int:
        """Offsets listed in every segment (2 bytes each): the index's size."""
        return sum(len(segment.offsets) for segment in self._segments.values())

    def estimated_bytes(self) -> int:
        """Memory held by the segments' lists and directories."""
        held = 0
        for segment in self._segments.values():
            held += int(segment.offsets.estimated_size()) + int(segment.directory.estimated_size())
        return held

    def added(self, key_end: int) -> None:
        """Keys below ``key_end`` may now exist; every full segment of them is indexed."""
        self._key_end = key_end
        while self._key_end - self._indexed_end >= self._segment_keys:
            self._build(self._indexed_end)
            self._indexed_end += self._segment_keys

    def removed(self, keys: pl.Series) -> None:
        """These keys died (their rows were replaced or deleted); mostly dead segments are rebuilt."""
        indexed = keys.filter(keys < self._indexed_end)
        if indexed.is_empty():
            return
        bases = (indexed // self._segment_keys * self._segment_keys).value_counts()
        for base, count in bases.rows():
            self._dead[base] = self._dead.get(base, 0) + count
            segment = self._segments.get(base)
            if segment is not None and 2 * self._dead[base] >= segment.built_from:
                self._build(base)

    def narrowing(self, text: str) -> pl.Expr | None:
        """A predicate on ``SEARCH_KEY`` that every row holding ``text`` meets, or None if none narrows.

        ``text`` is a normalized search text. Rows meeting the predicate still need the exact test.
        Every segment is answered by the same few operations (a lookup of each gram in the sorted
        table of every segment's grams, one intersection of each segment's rarest lists, side by
        side), not by operations per segment. The candidates are a bitmap over every key, so the
        predicate is one lookup per row.
        """
        listing = self._listing
        if len(text) < GRAM_LENGTH or listing is None:
            return None
        grams = sorted(set(_grams_of(text)))
        found: dict[int, list[tuple[int, int, bool]]] = {}
        for base, start, end, common in _rows_of_grams(listing, grams):
            found.setdefault(base, []).append((start, end, common))
        ranked: list[list[tuple[int, pl.Series]]] = [[] for _ in range(_LISTS_INTERSECTED)]
        whole: list[int] = []
        for base, segment in self._segments.items():
            entries = found.get(base, [])
            if len(entries) < len(grams):
                continue  # a gram no key of the segment holds (its unsplit keys are added below)
            bounds = sorted((end - start, start) for start, end, common in entries if not common)
            if not bounds:
                whole.append(base)
                continue
            lists = [segment.offsets.slice(start, length) for length, start in bounds[:_LISTS_INTERSECTED]]
            for rank, listed in enumerate(ranked):
                listed.append((base, lists[min(rank, len(lists) - 1)]))  # a list met twice changes nothing
        if len(whole) == len(self._segments):
            return None  # every segment would be read whole: a plain scan is as good
        candidates = [
            self._intersection([_keys_of(listed) for listed in ranked]),
            *(segment.unsplit for segment in self._segments.values()),
            *(_key_range(base, base + self._segment_keys) for base in whole),
            _key_range(self._indexed_end, self._key_end),
        ]
        held = _bitmap(pl.concat(candidates), self._key_end)
        return pl.lit(held).gather(pl.col(SEARCH_KEY))

    def _intersection(self, key_lists: list[pl.Series]) -> pl.Series:
        """The keys in every list: the first list's keys that each other list's bitmap holds."""
        keys = key_lists[0]
        for other in key_lists[1:]:
            if keys.is_empty():
                break
            keys = keys.filter(_bitmap(other, self._key_end).gather(keys))
        return keys

    def _build(self, base: int) -> None:
        began = time.perf_counter()
        try:
            self._build_segment(base)
        finally:
            self.build_seconds += time.perf_counter() - began

    def _build_segment(self, base: int) -> None:
        rows = self._texts_between(base, base + self._segment_keys)
        self._dead.pop(base, None)
        if rows.is_empty():
            self._segments.pop(base, None)
        else:
            self._segments[base] = _segment_of(base, rows, common_share=self._common_share)
        # Made here, where changes apply one at a time: answers running side by side only read it.
        segments = self._segments.values()
        self._listing = (
            pl.concat([segment.listing() for segment in segments]).sort("gram") if segments else None
        )


def _keys_of(lists: list[tuple[int, pl.Series]]) -> pl.Series:
    """Offsets listed in several segments as keys (each plus its segment's base)."""
    return (
        pl.concat([offsets.cast(pl.UInt32) + base for base, offsets in lists], how="vertical")
        if lists
        else pl.Series(dtype=pl.UInt32())
    )


def _rows_of_grams(listing: pl.DataFrame, grams: list[int]) -> list[tuple[int, int, int, bool]]:
    """(base, start, end, common) of these grams in every segment, from the table sorted by gram."""
    column = listing["gram"]
    wanted = pl.Series(grams, dtype=column.dtype)
    lows = column.search_sorted(wanted, side="left").to_list()
    highs = column.search_sorted(wanted, side="right").to_list()
    columns = listing.select("base", "start", "end", "common")
    return [
        row for low, high in zip(lows, highs, strict=True) for row in columns.slice(low, high - low).rows()
    ]


def _key_range(low: int, high: int) -> pl.Series:
    return pl.int_range(low, high, dtype=pl.UInt32, eager=True)


def _bitmap(keys: pl.Series, size: int) -> pl.Series:
    """True at each of ``keys`` (all below ``size``), False elsewhere."""
    held = pl.repeat(value=False, n=size, dtype=pl.Boolean, eager=True)
    return held.scatter(keys, values=True) if len(keys) else held


def _segment_of(base: int, rows: pl.DataFrame, *, common_share: float) -> _Segment:
    texts = rows.select(
        (pl.col(SEARCH_KEY) - base).cast(pl.UInt16).alias("offset"),
        pl.col(_SEARCH_TEXT).alias("text"),
        pl.col(_SEARCH_TEXT).str.len_chars().alias("length"),
    )
    long_texts = texts["length"] > LONGEST_INDEXED_TEXT
    postings = _postings(texts.filter(~long_texts))
    holders = postings.group_by("gram", maintain_order=True).len()
    common = holders.filter(pl.col("len") > common_share * rows.height)["gram"]
    listed = holders.filter(~pl.col("gram").is_in(common.implode()))
    ends = listed["len"].cum_sum()
    return _Segment(
        base=base,
        built_from=rows.height,
        directory=pl.DataFrame({"gram": listed["gram"], "start": ends - listed["len"], "end": ends}),
        offsets=postings.filter(~pl.col("gram").is_in(common.implode()))["offset"],
        common=frozenset(common.to_list()),
        unsplit=texts.filter(long_texts)["offset"].cast(pl.UInt32) + base,
    )


def _postings(texts: pl.DataFrame) -> pl.DataFrame:
    """(gram, offset) for every gram of every text, once each, sorted by gram then offset.

    Grams are hashed to 32 bits: two grams sharing a hash share a list, which only adds candidates
    that the exact test then drops. Sorting one 64-bit number (gram, offset) is much faster than
    sorting by two columns.
    """
    longest = int(texts["length"].max() or 0)  # type: ignore[arg-type]
    pieces = [
        texts.lazy()
        .filter(pl.col("length") >= start + GRAM_LENGTH)
        .select("offset", pl.col("text").str.slice(start, GRAM_LENGTH).alias("gram"))
        for start in range(longest - GRAM_LENGTH + 1)
    ]
    if not pieces:
        return pl.DataFrame(schema={"gram": pl.UInt64(), "offset": pl.UInt16()})
    packed = (
        pl.concat(pieces)
        .filter(~pl.col("gram").str.contains(_FIELD_SEPARATOR, literal=True))
        .select(
            (_gram_hash(pl.col("gram")) * (SEGMENT_KEYS) + pl.col("offset").cast(pl.UInt64)).alias("code")
        )
        .collect()["code"]
        .sort()
    )
    distinct = packed.filter((packed != packed.shift(1)).fill_null(value=True))
    return pl.DataFrame(
        {"gram": distinct // SEGMENT_KEYS, "offset": (distinct % SEGMENT_KEYS).cast(pl.UInt16)}
    )


def _gram_hash(grams: pl.Expr) -> pl.Expr:
    return grams.hash() & 0xFFFFFFFF


def _grams_of(text: str) -> Iterable[int]:
    pieces = [text[start : start + GRAM_LENGTH] for start in range(len(text) - GRAM_LENGTH + 1)]
    return pl.select(_gram_hash(pl.lit(pl.Series(pieces, dtype=pl.String())))).to_series().to_list()
