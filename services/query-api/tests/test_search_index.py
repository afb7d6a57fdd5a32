"""Search through the trigram index finds exactly the rows a plain substring test finds, as rows change."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_documents import transaction
from reference import Query, matches

from query_api.columns import SEARCH_KEY
from query_api.filters import TransactionFilter
from query_api.readmodel import ReadModel
from query_api.scope import EventScope
from query_api.searchindex import LONGEST_INDEXED_TEXT, SearchIndex

EVERYTHING = EventScope.everything()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Few letters, so texts share many grams, some grams are common and some lists intersect to nothing.
WORDS = st.text(alphabet="abcAB", min_size=0, max_size=6)
SEARCHED_FIELDS = ("Name", "Email", "Phone", "PaymentID", "ticketId")


@st.composite
def buyers(draw: st.DrawFn, n: int, ts: int = 1) -> dict[str, Any]:
    first, last = draw(WORDS), draw(WORDS)
    return transaction(
        n,
        ts=ts,
        Name=f"{first} {last}",
        Email=draw(st.sampled_from(("", f"{first}.{last}@example.com", f"{last}{n}@ex.org"))),
        Phone=draw(st.sampled_from(("", "+1 555 01", f"+44 {n:04d}"))),
        PaymentID=draw(st.sampled_from(("", f"pi_{n}{first}", "pi_shared"))),
        ticketId=f"T{n}{last}",
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Rows loaded, then newer copies of some of them (and new rows), then ids deleted."""
    count = draw(st.integers(0, 40))
    loaded = [draw(buyers(n)) for n in range(count)]
    changed = [draw(buyers(n, ts=2)) for n in draw(st.lists(st.integers(0, count + 5), max_size=15))]
    deleted = [f"tx{n}" for n in draw(st.lists(st.integers(0, count), max_size=15))]
    return loaded, changed, deleted


def searches(documents: list[dict[str, Any]]) -> st.SearchStrategy[str]:
    """A piece of a held field (any length, any case), a whole field, or text nothing holds."""
    fields = [str(document[name]) for document in documents for name in SEARCHED_FIELDS if document[name]]
    pieces = (
        st.sampled_from(fields).flatmap(
            lambda text: st.tuples(st.integers(0, len(text)), st.integers(1, len(text))).map(
                lambda bounds: text[bounds[0] : bounds[0] + bounds[1]]
            )
        )
        if fields
        else st.nothing()
    )
    changed_case = pieces.map(str.swapcase) | pieces.map(str.upper)
    return pieces | changed_case | st.sampled_from(("zzz", "xyzxyz", "q", "bq", "@example.com", "ab  ba"))


@SETTINGS
@given(
    history=histories(),
    segment_keys=st.sampled_from((1, 3, 8)),
    share=st.sampled_from((0.3, 1.0)),
    data=st.data(),
)
def test_search_finds_what_a_substring_test_finds_as_rows_change(history, segment_keys, share, data):
    loaded, changed, deleted = history
    model = ReadModel(chunk_rows=8, search_segment_keys=segment_keys, common_gram_share=share)
    model.upsert(loaded)
    model.upsert(changed)
    for document_id in deleted:
        model.delete(document_id, ts=3)
    held: dict[str, dict[str, Any]] = {}
    for document in [*loaded, *changed]:
        held[document["id"]] = document
    for document_id in deleted:
        held.pop(document_id, None)
    for _ in range(5):
        text = data.draw(searches(list(held.values())), label="search")
        found = model.rows(EVERYTHING, TransactionFilter.of(search=text))["id"].to_list()
        expected = [key for key, document in held.items() if matches(document, Query(search=text))]
        assert sorted(found) == sorted(expected), text


class LiveRows:
    """The rows an index reads back, as the read model would answer them (dead rows removed)."""

    def __init__(self, texts: list[str]) -> None:
        self.rows = pl.DataFrame(
            {SEARCH_KEY: pl.Series(range(len(texts)), dtype=pl.UInt32), "searchText": texts}
        )

    def between(self, low: int, high: int) -> pl.DataFrame:
        return self.rows.filter(pl.col(SEARCH_KEY).is_between(low, high, closed="left"))

    def remove(self, index: SearchIndex, keys: list[int]) -> None:
        self.rows = self.rows.filter(~pl.col(SEARCH_KEY).is_in(keys))
        index.removed(pl.Series(keys, dtype=pl.UInt32))

    def candidates(self, index: SearchIndex, text: str) -> list[int] | None:
        narrowing = index.narrowing(text)
        return None if narrowing is None else self.rows.filter(narrowing)[SEARCH_KEY].to_list()


def indexed(texts: list[str], *, segment_keys: int, share: float = 1.0) -> tuple[SearchIndex, LiveRows]:
    live = LiveRows(texts)
    index = SearchIndex(live.between, segment_keys=segment_keys, common_share=share)
    index.added(len(texts))
    return index, live


def test_the_index_narrows_to_the_rows_holding_every_gram():
    texts = ["ana lima\nana@example.com", "bo lund\nbo@example.com", "lima bean\nx@y.z", "ana\nt1"]
    index, live = indexed(texts * 4, segment_keys=4)
    assert index.indexed_end == 16
    assert live.candidates(index, "ana lim") == [0, 4, 8, 12]
    assert live.candidates(index, "nobody") == []
    # Too short to have a gram: no narrowing, the filter tests every row.
    assert index.narrowing("an") is None


def test_common_grams_are_not_listed_and_narrow_nothing():
    texts = [f"buyer{n}@example.com" for n in range(20)]
    index, live = indexed(texts, segment_keys=10, share=0.5)
    assert index.narrowing("example.com") is None
    assert live.candidates(index, "buyer7@") == [7]
    every_gram_listed, _ = indexed(texts, segment_keys=10, share=1.0)
    assert index.postings() < every_gram_listed.postings()


def test_keys_not_indexed_yet_and_long_texts_are_always_candidates():
    long_text = "x" * (LONGEST_INDEXED_TEXT + 1)
    index, live = indexed(["abc", long_text, "abd", "zzz abc", "zzz"], segment_keys=2)
    assert index.indexed_end == 4
    assert live.candidates(index, "abc") == [0, 1, 3, 4]


def test_a_mostly_dead_segment_is_built_again_from_its_live_rows():
    index, live = indexed([f"name{n}" for n in range(8)], segment_keys=8)
    before = index.postings()
    live.remove(index, [0, 1, 2])
    assert index.postings() == before  # fewer than half died: the lists are kept
    live.remove(index, [3])
    assert 0 < index.postings() < before
    assert live.candidates(index, "name5") == [5]
    live.remove(index, [4, 5, 6, 7])
    assert index.postings() == 0
