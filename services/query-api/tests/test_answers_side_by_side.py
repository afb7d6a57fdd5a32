"""Answers computed side by side in the answer threads equal the same answers computed one at a time.

The per-event partials, the customer sort keys and the table queries are brought up to date by the
answer that first needs them after a change; several threads may ask at once.
"""

from __future__ import annotations

import asyncio
import json
import random

from query_documents import transaction

from query_api.analytics import analyze, report_json
from query_api.filters import TransactionFilter
from query_api.pagination import PageRequest
from query_api.readmodel import ReadModel
from query_api.readside import ReadSide
from query_api.scope import EventScope
from query_api.tables import customers_page, transactions_page

EVENTS = [f"ev{n}" for n in range(8)]
ROUNDS = 25
EVERYONE = EventScope.everything()


def documents(draw: random.Random, first: int, count: int, *, ts: int) -> list[dict]:
    return [
        transaction(
            n,
            event=draw.choice(EVENTS),
            ts=ts,
            TotalAmount=float(draw.randint(1, 500)),
            Email=f"buyer{draw.randint(1, 300)}@example.com",
            IsRefunded=draw.random() < 0.1,
        )
        for n in range(first, first + count)
    ]


def questions() -> list:
    """Functions of a model, each answering one question as JSON text."""

    def analytics(events):
        filters = TransactionFilter.of(event_ids=events)
        return lambda model: json.dumps(report_json(analyze(model, EVERYONE, filters, include=["events"])))

    def customers(events):
        request = PageRequest(sort="totalSpent", descending=True, page_size=20)
        filters = TransactionFilter.of(event_ids=events)
        return lambda model: json.dumps(customers_page(model, EVERYONE, filters, request)[0], default=str)

    def transactions(events):
        request = PageRequest(sort="TotalAmount", descending=True, page_size=20)
        filters = TransactionFilter.of(event_ids=events)
        return lambda model: json.dumps(transactions_page(model, EVERYONE, filters, request)[0], default=str)

    selections = [(), ("ev1",), ("ev2", "ev3")]
    return [ask(events) for ask in (analytics, customers, transactions) for events in selections]


async def test_answers_side_by_side_after_changes_equal_answers_one_at_a_time():
    draw = random.Random(7)
    side = ReadSide(answer_threads=4)
    reference = ReadModel()
    initial = documents(draw, 1, 3000, ts=1)
    side.model.upsert(initial)
    reference.upsert(initial)
    side.mark_loaded()
    asked = questions()
    try:
        for round_number in range(ROUNDS):
            # A change touching a few events and buyers: every cache has something to bring up to date.
            changed = documents(draw, draw.randint(1, 2900), 40, ts=10 + round_number)
            await side.change(lambda changed=changed: side.model.upsert(changed))
            reference.upsert(changed)
            answers = await asyncio.gather(*(side.answer(question) for question in asked * 2))
            expected = [question(reference) for question in asked] * 2
            assert answers == expected, f"round {round_number}"
    finally:
        side.close()
