"""The ids the read model holds and the ``_ts`` of each, in sorted Polars columns instead of a dict.

A Python dict of a million id strings to ``_ts`` ints costs about 150 MB of objects; here each id
is two 64-bit hashes (Polars' ``hash`` with two seeds) and its ``_ts`` another 8 bytes: 24 bytes a
row. Two ids collide only if both hashes do (about 1 in 10^27 for a million ids), so a lookup is
exact in practice without reading the frame. New ids wait in a small dict and are merged into the
sorted columns in batches, so an upsert does not copy the columns.
"""

from __future__ import annotations

from typing import Final

import polars as pl

ABSENT: Final = -(2**63)
"""The ``_ts`` given for an id that is not held (below every real ``_ts``)."""

_MERGE_AT: Final = 65_536
"""Pending ids are merged into the sorted columns once there are this many (or an eighth of those)."""


class IdKeys:
    """Two independent 64-bit hashes per id: together they name an id."""

    __slots__ = ("first", "second")

    def __init__(self, first: pl.Series, second: pl.Series) -> None:
        self.first = first
        self.second = second

    @classmethod
    def of(cls, ids: pl.Series | list[str]) -> IdKeys:
        """The keys of these ids."""
        series = ids if isinstance(ids, pl.Series) else pl.Series(ids, dtype=pl.String())
        return cls(series.hash(seed=0), series.hash(seed=1))

    def pairs(self) -> list[tuple[int, int]]:
        """The keys as Python pairs (for the pending dict)."""
        return list(zip(self.first.to_list(), self.second.to_list(), strict=True))

    def filter(self, mask: pl.Series) -> IdKeys:
        """The keys where ``mask`` is true."""
        return IdKeys(self.first.filter(mask), self.second.filter(mask))


class HeldIds:
    """The ``_ts`` held per id: sorted hash columns plus a small dict of ids added since the last merge."""

    def __init__(self, *, merge_at: int = _MERGE_AT) -> None:
        self._merge_at = merge_at
        self._first = pl.Series(dtype=pl.UInt64())
        self._second = pl.Series(dtype=pl.UInt64())
        self._ts = pl.Series(dtype=pl.Int64())  # ABSENT in the slot of an id removed since the merge
        self._pending: dict[tuple[int, int], int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def ts_of(self, keys: IdKeys) -> pl.Series:
        """The ``_ts`` held for each key, ``ABSENT`` where the id is not held."""
        positions = self._positions(keys)
        held = self._gather_ts(positions)
        if not self._pending:
            return held
        pending = [self._pending.get(pair) for pair in keys.pairs()]
        return pl.select(pl.coalesce(pl.Series(pending, dtype=pl.Int64()), held).alias("ts")).to_series()

    def contains(self, keys: IdKeys) -> pl.Series:
        """Whether each id is held."""
        return self.ts_of(keys) != ABSENT

    def put(self, keys: IdKeys, stamps: pl.Series) -> None:
        """Hold these ids with these ``_ts`` (new ids or newer copies)."""
        positions = self._positions(keys)
        in_columns = positions >= 0
        slots = positions.filter(in_columns)
        self._count += int((self._ts.gather(slots) == ABSENT).sum())
        if slots.len():
            self._ts.scatter(slots, stamps.filter(in_columns))
        others = ~in_columns
        for pair, ts in zip(keys.filter(others).pairs(), stamps.filter(others).to_list(), strict=True):
            if pair not in self._pending:
                self._count += 1
            self._pending[pair] = ts
        if len(self._pending) >= max(self._merge_at, self._first.len() // 8):
            self._merge()

    def discard(self, keys: IdKeys) -> None:
        """Forget these ids (removed rows)."""
        positions = self._positions(keys)
        slots = positions.filter(positions >= 0)
        self._count -= int((self._ts.gather(slots) != ABSENT).sum())
        if slots.len():
            self._ts.scatter(slots, ABSENT)
        for pair in keys.pairs():
            if self._pending.pop(pair, None) is not None:
                self._count -= 1

    def _gather_ts(self, positions: pl.Series) -> pl.Series:
        found = self._ts.gather(positions.clip(lower_bound=0)) if self._ts.len() else positions
        return pl.select(
            pl.when(positions >= 0).then(found).otherwise(pl.lit(ABSENT, dtype=pl.Int64())).alias("ts")
        ).to_series()

    def _positions(self, keys: IdKeys) -> pl.Series:
        """The slot of each key in the sorted columns, -1 where absent (a removed id keeps its slot)."""
        size = self._first.len()
        if size == 0:
            return pl.repeat(-1, keys.first.len(), dtype=pl.Int64(), eager=True)
        at = self._first.search_sorted(keys.first).cast(pl.Int64()).clip(upper_bound=size - 1)
        same_first = self._first.gather(at) == keys.first
        same = same_first & (self._second.gather(at) == keys.second)
        found = pl.select(pl.when(same).then(at).otherwise(-1).alias("slot")).to_series()
        # Held ids whose first hashes alone collide sit side by side: walk that run (very rare).
        for index in (same_first & ~same).arg_true().to_list():
            position = at[index] + 1
            while position < size and self._first[position] == keys.first[index]:
                if self._second[position] == keys.second[index]:
                    found[index] = position
                    break
                position += 1
        return found

    def _merge(self) -> None:
        pairs = list(self._pending)
        held = pl.DataFrame({"first": self._first, "second": self._second, "ts": self._ts})
        added = pl.DataFrame(
            {
                "first": pl.Series([pair[0] for pair in pairs], dtype=pl.UInt64()),
                "second": pl.Series([pair[1] for pair in pairs], dtype=pl.UInt64()),
                "ts": pl.Series(list(self._pending.values()), dtype=pl.Int64()),
            }
        )
        merged = pl.concat([held.filter(pl.col("ts") != ABSENT), added]).sort(["first", "second"])
        self._first, self._second, self._ts = (merged[name].rechunk() for name in ("first", "second", "ts"))
        self._pending.clear()
