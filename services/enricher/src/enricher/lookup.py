"""Finding the transactions of payments: lookups asked at the same time go to Cosmos DB as one query.

The query is cross-partition (a payment may back rows of several events), which costs the SDK a
query plan round trip before the query itself, and the server a pass over the container. Payments
enriched concurrently ask within moments of each other, so lookups that arrive while a query is in
flight wait and go together in the next one (up to ``MAX_PAYMENTS_PER_QUERY`` ids): with N messages
in flight, about one query per N payments instead of one each. With ``linger_seconds`` each query
waits that long first, collecting the lookups asked meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otcommon.store import Document, DocumentContainer

TRANSACTIONS_OF_PAYMENTS = "SELECT * FROM c WHERE ARRAY_CONTAINS(@paymentIds, c.PaymentID)"
"""Every transaction of these payments, across events."""

MAX_PAYMENTS_PER_QUERY = 100
"""Ids per query: keeps the query text and each answer small."""


class PaymentTransactions:
    """Looks up the stored transactions of payments, batching the lookups asked meanwhile."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        max_payments: int = MAX_PAYMENTS_PER_QUERY,
        linger_seconds: float = 0.0,
    ) -> None:
        self._container = container
        self._max_payments = max_payments
        self._linger = linger_seconds
        self._waiting: dict[str, list[asyncio.Future[list[Document]]]] = {}
        self._querying: asyncio.Task[None] | None = None

    async def of(self, payment_id: str) -> list[Document]:
        """Every stored transaction with this PaymentID (each with its ETag)."""
        answer: asyncio.Future[list[Document]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(payment_id, []).append(answer)
        if self._querying is None:
            self._querying = asyncio.ensure_future(self._answer_all())
        return await answer

    async def _answer_all(self) -> None:
        try:
            while self._waiting:
                if self._linger > 0:
                    await asyncio.sleep(self._linger)
                payment_ids = list(self._waiting)[: self._max_payments]
                asking = {payment_id: self._waiting.pop(payment_id) for payment_id in payment_ids}
                try:
                    found = await self._query(payment_ids)
                except Exception as error:  # noqa: BLE001 - handed to every caller, who raises it
                    for answers in asking.values():
                        _settle(answers, error=error)
                    continue
                for payment_id, answers in asking.items():
                    _settle(answers, rows=found.get(payment_id, []))
        finally:
            self._querying = None

    async def _query(self, payment_ids: list[str]) -> dict[str, list[Document]]:
        found: dict[str, list[Document]] = {}
        async for page in self._container.query(
            TRANSACTIONS_OF_PAYMENTS, parameters={"@paymentIds": payment_ids}
        ):
            for row in page.items:
                found.setdefault(str(row.get("PaymentID")), []).append(row)
        return found


def _settle(
    answers: list[asyncio.Future[list[Document]]],
    *,
    rows: list[Document] | None = None,
    error: Exception | None = None,
) -> None:
    for answer in answers:
        if answer.done():
            continue  # its caller was cancelled (message abandoned)
        if error is not None:
            answer.set_exception(error)
        else:
            # Each caller gets its own copies: a writer's decisions must not leak into another's.
            answer.set_result([dict(row) for row in rows or []])
