"""Per-event partial aggregates: a question that selects only events is answered from them.

The dashboard's commonest questions select whole events: all of them, one, a tour, or the events
a token may see. Every metric and breakdown is built from sums that add up across disjoint sets
of rows (``metrics.partial_totals``, ``breakdowns.group_sums``, sums per UTC quarter-hour), so
the answer for a set of events is the sum of each event's partials, a few hundred rows instead of
a million. An event's partials are dropped when one of its rows changes and rebuilt from that
event's rows when next asked for, so they are exact and a change costs one event's rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

import polars as pl

from query_api import breakdowns
from query_api.columns import PURCHASE_QUARTER
from query_api.engine import collected, grouped
from query_api.filters import TransactionFilter
from query_api.metrics import partial_totals

if TYPE_CHECKING:
    from collections.abc import Collection

    from query_api.readmodel import ReadModel
    from query_api.scope import EventScope

_UNRESOLVED: Final = (pl.col("enrichmentState") == "unresolved").sum().alias("unresolved")
GROUPED: Final = tuple(breakdowns.GROUP_KEYS)
"""The grouped breakdowns kept per event."""
EVENT: Final = "eventId"


@dataclass(frozen=True, slots=True)
class Partials:
    """Sums per event (and per key, quarter-hour or account), for the events selected."""

    totals: pl.DataFrame
    quarters: pl.DataFrame
    groups: dict[str, pl.DataFrame]
    accounts: pl.DataFrame
    unresolved: pl.DataFrame

    def select(self, events: pl.Expr) -> Partials:
        """The partials of the events the predicate on ``eventId`` selects."""
        return Partials(
            totals=self.totals.filter(events),
            quarters=self.quarters.filter(events),
            groups={name: frame.filter(events) for name, frame in self.groups.items()},
            accounts=self.accounts.filter(events),
            unresolved=self.unresolved.filter(events),
        )

    def combined_with(self, other: Partials) -> Partials:
        """Both sets of partials, for disjoint sets of events."""
        return Partials(
            totals=pl.concat([self.totals, other.totals]),
            quarters=pl.concat([self.quarters, other.quarters]),
            groups={name: pl.concat([frame, other.groups[name]]) for name, frame in self.groups.items()},
            accounts=pl.concat([self.accounts, other.accounts]),
            unresolved=pl.concat([self.unresolved, other.unresolved]),
        )


def partials_of(rows: pl.DataFrame) -> Partials:
    """Every partial of these rows, per event."""
    return Partials(
        totals=grouped(rows, [EVENT], *partial_totals()),
        quarters=grouped(rows, [EVENT, PURCHASE_QUARTER], *breakdowns.quarter_sums()),
        groups={name: breakdowns.grouped_rows(rows, name, by=[EVENT]) for name in GROUPED},
        accounts=breakdowns.connected_accounts(rows, by=[EVENT]),
        unresolved=grouped(
            rows, [EVENT], (pl.col("enrichmentState") == "unresolved").sum().alias("unresolved")
        ),
    )


@dataclass(frozen=True, slots=True)
class Summed:
    """Queries summing partials over the events selected, and the quarter-hour sums to read local time from.

    ``quarters`` holds sums per quarter-hour (``breakdowns.quarter_sums``), one row per event and
    quarter-hour or already summed over events; ``quarter_range`` holds at least its least and greatest
    quarter-hour (``timezones.LocalClock.of``).
    """

    plans: dict[str, pl.LazyFrame]
    quarters: pl.LazyFrame
    quarter_range: pl.Series


def summed_plans(partials: Partials, groups: Collection[str], events: pl.Expr | None = None) -> Summed:
    """Queries summing the partials of the events ``events`` selects (all without it): totals and, per
    key of ``groups``, sums (with ``routes``, per connected account and the unresolved count too)."""

    def of(frame: pl.DataFrame) -> pl.LazyFrame:
        return frame.lazy() if events is None else frame.lazy().filter(events)

    plans = {"totals": of(partials.totals).select(pl.exclude(EVENT).sum())}
    for name in groups:
        per_event = partials.groups[name]
        label = [pl.col("label").max()] if "label" in per_event.columns else []
        sums = (pl.col(column).sum() for column in breakdowns.GROUP_COLUMNS)
        plans[name] = of(per_event).group_by("key").agg(*sums, *label)
    if "routes" in groups:
        plans["accounts"] = (
            of(partials.accounts)
            .group_by("accountId")
            .agg(pl.col("accountName").max(), pl.col("ordersCount").sum(), pl.col("grossRevenue").sum())
        )
        plans["unresolved"] = of(partials.unresolved).select(pl.col("unresolved").sum())
    return Summed(plans, of(partials.quarters), partials.quarters[PURCHASE_QUARTER])


def _summed_over_events(partials: Partials) -> Partials:
    """The partials of every event summed into one row per key (quarter-hour, account), as partials."""
    summed = summed_plans(partials, GROUPED)
    quarters = summed.quarters.group_by(PURCHASE_QUARTER).agg(pl.exclude(EVENT).sum())
    sums = collected({**summed.plans, "quarters": quarters})
    everyone = pl.lit("", dtype=pl.String).alias(EVENT)
    return Partials(
        totals=sums["totals"].with_columns(everyone),
        quarters=sums["quarters"].with_columns(everyone),
        groups={name: sums[name].with_columns(everyone) for name in GROUPED},
        accounts=sums["accounts"].with_columns(everyone),
        unresolved=sums["unresolved"].with_columns(everyone),
    )


def answers_from_partials(filters: TransactionFilter) -> bool:
    """Whether the filters select whole events only (no dates, types, flags, codes or search)."""
    return replace(filters, event_ids=(), date_mode="purchase") == TransactionFilter()


class EventRollups:
    """The per-event partials of a read model, rebuilt per event after its rows change."""

    def __init__(self, model: ReadModel) -> None:
        self._model = model
        self._partials: Partials | None = None
        # The partials summed over every event, made with them: the commonest question needs no sum.
        self._everything: Partials | None = None
        self._stale: set[str] = set()
        self._everything_stale = True
        # Answers run in several threads (readside.py): one at a time brings the partials up to date.
        self._refreshing = threading.Lock()
        model.on_change(self._invalidate)

    def sums(self, scope: EventScope, filters: TransactionFilter, groups: Collection[str]) -> Summed:
        """The sums of the events both the scope and the ``eventId`` filter allow (``summed_plans``)."""
        with self._refreshing:
            partials = self._current()
            if scope.allowed is None and not filters.event_ids:
                if self._everything is None:
                    self._everything = _summed_over_events(partials)
                return summed_plans(self._everything, groups)
        return summed_plans(partials, groups, _events_of(scope, filters))

    def selected(self, scope: EventScope, filters: TransactionFilter) -> Partials:
        """The partials of the events both the scope and the ``eventId`` filter allow."""
        with self._refreshing:
            partials = self._current()
        return partials.select(_events_of(scope, filters))

    def _current(self) -> Partials:
        frame = self._model.frame()
        if self._everything_stale or self._partials is None:
            self._partials = partials_of(frame)
            self._everything = None
        elif self._stale:
            changed = pl.col(EVENT).is_in(sorted(self._stale))
            rebuilt = partials_of(frame.filter(changed))
            self._partials = self._partials.select(~changed).combined_with(rebuilt)
            self._everything = None
        self._stale.clear()
        self._everything_stale = False
        return self._partials

    def _invalidate(self, event_ids: pl.DataFrame) -> None:
        if not self._everything_stale:
            self._stale.update(event_ids[EVENT].unique().to_list())


def _events_of(scope: EventScope, filters: TransactionFilter) -> pl.Expr:
    """The predicate on ``eventId`` of the events both the scope and the ``eventId`` filter allow."""
    events = scope.expression()
    if filters.event_ids:
        events = events & pl.col(EVENT).is_in(list(filters.event_ids))
    return events
