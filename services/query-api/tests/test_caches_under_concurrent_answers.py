"""After a change, two answer threads bringing the same cache up to date at once both see the change.

A change runs while no answer does (``readgate``; pinned by test_readgate.py and test_readside.py),
and leaves the caches marked stale; the first answer that needs a cache brings it up to date. With
the API's two answer threads, a second answer may need the same cache while the first is half-way
through that: it must wait for it, not read what the first has not finished writing.

Each test stops the first answer inside the refresh (the model it reads stops in ``frame()``), runs
the second answer until it is either finished or waiting to enter the refresh (its thread stands on
the ``with`` of the refresh's lock), and only then lets the first go on. So the interleaving that
would expose a missing lock is forced, not hoped for, and nothing waits on time.

What each lock guards, as these tests found by removing it:
- ``EveryoneKeys`` (customers.py) takes the stale marks before it reads the rows: without its lock
  the second answer finds no mark and pages by the old keys (the first test's second page is wrong).
- ``EventRollups`` (rollups.py) clears its marks only after rebuilding, so without its lock the second
  answer rebuilds the same partials again and is still right; the lock saves that work, and keeps the
  answers right if the marks were ever taken first (the second test's answers are then wrong
  without it). The last assertion of each test says the second answer did wait.
- The table cache's locks (tables.py) keep two threads from working on one query's keys and runs at
  once; everything they hold is derived from one state of the model (no change runs beside
  answers), so a duplicate is equal, and no interleaving these hooks can force gives a wrong page.
  The last test forces two answers to keep the runs of one transactions query at once: without
  the lock around the kept runs, both evict the same oldest run and the second eviction fails.
"""

from __future__ import annotations

import asyncio
import dis
import sys
import threading
from typing import TYPE_CHECKING, Any

import polars as pl
from query_documents import transaction

from query_api.analytics import analyze, report_json
from query_api.customers import EveryoneKeys
from query_api.filters import TransactionFilter
from query_api.pagination import PageRequest
from query_api.readmodel import ReadModel
from query_api.readside import ReadSide
from query_api.rollups import EventRollups
from query_api.scope import EventScope
from query_api.tables import RUNS_KEPT, TRANSACTION_SORTS, _Query, customers_page

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from types import CodeType

WAIT_SECONDS = 10.0
"""How long a held thread waits for the test to let it go: a bound, never reached when the code works."""
POLL_SECONDS = 0.001
EVERYONE = EventScope.everything()
WHALE = "whale@example.com"


class PausingModel(ReadModel):
    """A read model that, once armed, stops the next caller of ``frame()`` until the test resumes it.

    The frame is read before stopping, so the caller goes on with the rows it would have had.
    """

    def __init__(self) -> None:
        super().__init__()
        self._armed = False
        self._arming = threading.Lock()
        self.paused = threading.Event()
        self.resume = threading.Event()

    def pause_next_frame(self) -> None:
        with self._arming:
            self._armed = True

    def frame(self) -> pl.DataFrame:
        frame = super().frame()
        with self._arming:
            stop, self._armed = self._armed, False
        if stop:
            self.paused.set()
            if not self.resume.wait(WAIT_SECONDS):
                raise TimeoutError("the test never resumed the paused answer")
        return frame


class SecondAnswer:
    """Runs ``compute`` in an answer thread and tells the test when it is waiting or finished."""

    def __init__(self, compute: Callable[[ReadModel], Any]) -> None:
        self._compute = compute
        self.thread_id: int | None = None
        self.started = threading.Event()
        self.finished = threading.Event()

    def __call__(self, model: ReadModel) -> Any:
        self.thread_id = threading.get_ident()
        self.started.set()
        try:
            return self._compute(model)
        finally:
            self.finished.set()

    def waiting_or_finished(self, refreshes: Collection[CodeType]) -> str:
        """Block until the thread finished or stands on a ``with`` in one of ``refreshes``; say which."""
        assert self.started.wait(WAIT_SECONDS)
        for _ in range(round(WAIT_SECONDS / POLL_SECONDS)):
            if self.finished.wait(POLL_SECONDS):
                return "finished"
            frame = sys._current_frames().get(self.thread_id or 0)  # where the thread stands
            if (
                frame is not None
                and frame.f_code in refreshes
                and _entering_with(frame.f_code, frame.f_lasti)
            ):
                return "waiting"
        raise AssertionError("the second answer neither finished nor waited")


def _entering_with(code: CodeType, offset: int) -> bool:
    """Whether the instruction at ``offset`` enters a ``with`` block (takes a lock, when blocked there)."""
    return any(op.offset == offset and op.opname == "BEFORE_WITH" for op in dis.get_instructions(code))


async def answer_while_another_refreshes(
    side: ReadSide, model: PausingModel, *, first: Callable[[ReadModel], Any], second: SecondAnswer,
    refreshes: Collection[CodeType],
) -> tuple[Any, Any, str]:  # fmt: skip
    """``first`` stopped inside its refresh, ``second`` run until it waits or ends, then both finished."""
    model.pause_next_frame()
    first_answer = asyncio.ensure_future(side.answer(first))
    assert await asyncio.to_thread(model.paused.wait, WAIT_SECONDS)
    second_answer = asyncio.ensure_future(side.answer(second))
    where = await asyncio.to_thread(second.waiting_or_finished, refreshes)
    model.resume.set()
    return await first_answer, await second_answer, where


def buyer(n: int) -> dict[str, Any]:
    return transaction(n, event=f"ev{n % 3}", Email=f"buyer{n}@example.com", TotalAmount=float(10 + n))


async def loaded(documents: list[dict[str, Any]]) -> tuple[ReadSide, PausingModel]:
    model = PausingModel()
    side = ReadSide(model=model, answer_threads=2)
    model.upsert(documents)
    side.mark_loaded()
    return side, model


def top_spenders(filters: TransactionFilter) -> Callable[[ReadModel], list[tuple[str, float]]]:
    request = PageRequest(sort="totalSpent", descending=True, page_size=3)

    def ask(model: ReadModel) -> list[tuple[str, float]]:
        rows, _ = customers_page(model, EVERYONE, filters, request)
        return [(row["email"], row["totalSpent"]) for row in rows]

    return ask


async def test_both_answer_threads_see_a_buyer_changed_while_the_customer_keys_are_brought_up_to_date():
    side, model = await loaded([*map(buyer, range(1, 41)), transaction(99, Email=WHALE, TotalAmount=1.0)])
    try:
        # Every buyer of every event, by total spent: built now, kept, and repaired after changes.
        everyone = top_spenders(TransactionFilter())
        assert await side.answer(everyone) == [("buyer40@example.com", 50.0), ("buyer39@example.com", 49.0),
                                               ("buyer38@example.com", 48.0)]  # fmt: skip
        await side.change(lambda: model.upsert([transaction(100, Email=WHALE, TotalAmount=5_000.0)]))
        # Another query over every buyer (by redemption date, so a query of its own) reads the same keys.
        second = SecondAnswer(top_spenders(TransactionFilter(date_mode="redemption")))

        first_page, second_page, where = await answer_while_another_refreshes(
            side, model, first=everyone, second=second, refreshes={EveryoneKeys.keys.__code__}
        )

        expected = [(WHALE, 5_001.0), ("buyer40@example.com", 50.0), ("buyer39@example.com", 49.0)]
        assert first_page == expected
        assert second_page == expected
        assert where == "waiting", "the interleaving this test is about did not happen"
    finally:
        side.close()


def totals(filters: TransactionFilter) -> Callable[[ReadModel], dict[str, Any]]:
    def ask(model: ReadModel) -> dict[str, Any]:
        report = report_json(analyze(model, EVERYONE, filters, include=["events"]))
        return {"ordersCount": report["ordersCount"], "grossRevenue": report["grossRevenue"]}

    return ask


async def test_both_answer_threads_see_an_event_changed_while_its_partials_are_rebuilt():
    side, model = await loaded(list(map(buyer, range(1, 41))))
    try:
        every_event = totals(TransactionFilter())
        one_event = totals(TransactionFilter(event_ids=("ev1",)))
        before = await side.answer(one_event)
        await side.answer(every_event)
        await side.change(lambda: model.upsert([transaction(200, event="ev1", TotalAmount=1_000.0)]))
        second = SecondAnswer(one_event)

        all_events, ev1, where = await answer_while_another_refreshes(
            side, model, first=every_event, second=second,
            refreshes={EventRollups.sums.__code__, EventRollups.selected.__code__},
        )  # fmt: skip

        assert all_events == {
            "ordersCount": 41,
            "grossRevenue": sum(10.0 + n for n in range(1, 41)) + 1_000.0,
        }
        assert ev1 == {
            "ordersCount": before["ordersCount"] + 1,
            "grossRevenue": before["grossRevenue"] + 1_000.0,
        }
        assert where == "waiting", "the interleaving this test is about did not happen"
    finally:
        side.close()


class RunsPausingAnEviction(dict[Any, Any]):
    """A query's kept runs that stop one thread just before it evicts a run, until the test resumes it."""

    def __init__(self, runs: dict[Any, Any]) -> None:
        super().__init__(runs)
        self.pause_thread: int | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __delitem__(self, key: Any) -> None:
        if threading.get_ident() == self.pause_thread and not self.paused.is_set():
            self.paused.set()
            if not self.resume.wait(WAIT_SECONDS):
                raise TimeoutError("the test never resumed the paused eviction")
        super().__delitem__(key)


def test_two_answers_keeping_runs_of_one_transactions_query_at_once_both_get_their_page():
    sorts = ["TotalAmount", "Name", "Email", "Phone", "TotalTickets", "eventId"]
    frame = pl.DataFrame({"id": [f"t{n}" for n in range(10)]} | {sort: [f"{sort}{n}" for n in range(10)]
                                                                  for sort in sorts})  # fmt: skip
    query = _Query(frame.select(pl.int_range(frame.height).alias("n")))

    def page(sort: str) -> Any:
        return query.page(frame, PageRequest(sort=sort, page_size=3), sortable=TRANSACTION_SORTS, key="id",
                          query_fingerprint="q")  # fmt: skip

    for sort in sorts[:RUNS_KEPT]:  # the query keeps as many runs as it may: the next order evicts one
        page(sort)
    outcomes: dict[str, Any] = {}

    def first() -> None:
        runs.pause_thread = threading.get_ident()
        try:
            outcomes["first"] = page(sorts[4])
        except Exception as error:  # noqa: BLE001 - the test reports what the thread met
            outcomes["first"] = error

    runs = RunsPausingAnEviction(query.runs)
    query.runs = runs
    first_thread = threading.Thread(target=first)
    first_thread.start()
    second = SecondAnswer(lambda _model: page(sorts[5]))
    try:
        assert runs.paused.wait(WAIT_SECONDS), "the first answer never reached its eviction"
        second_thread = threading.Thread(target=lambda: outcomes.setdefault("second", second(ReadModel())))
        second_thread.start()
        where = second.waiting_or_finished({_Query.page.__code__})
    finally:
        runs.resume.set()
        first_thread.join(WAIT_SECONDS)
    second_thread.join(WAIT_SECONDS)

    assert not isinstance(outcomes["first"], Exception), f"the first answer failed: {outcomes['first']!r}"
    assert [row["id"] for row in outcomes["first"].rows.to_dicts()] == ["t0", "t1", "t2"]
    assert [row["id"] for row in outcomes["second"].rows.to_dicts()] == ["t0", "t1", "t2"]
    assert len(query.runs) == RUNS_KEPT
    assert {("eventId", False), ("TotalTickets", False)} <= set(query.runs)
    assert where == "waiting", "the interleaving this test is about did not happen"
