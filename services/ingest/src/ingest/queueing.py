"""Queueing payments for enrichment without losing any.

A new payment is stored ``pending``; then ``PaymentEnrichmentRequested`` is published with a
message id derived from the PaymentID, the order and the source's stamp (the queue's duplicate
detection drops repeats of that request, never another order's request); then the
state becomes ``queued``. A crash between the steps leaves the document ``pending``, and the next
run publishes it again (:meth:`EnrichmentQueue.repair`).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from ingest.mapping import ENRICHMENT_REQUEST_FIELD
from otcommon.enrichment import REASON_FIELD, STATE_FIELD, EnrichmentReason, EnrichmentState
from otcommon.messages import PaymentEnrichmentRequested, make_envelope
from otcommon.schemas import format_timestamp, parse_timestamp
from otcommon.store import DocumentNotFoundError, EtagMismatchError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ingest.storage import TransactionWriter
    from otcommon.bus import MessagePublisher
    from otcommon.messages import Envelope
    from otcommon.store import Document, DocumentContainer

log = structlog.get_logger("ingest.queueing")

REQUEST_FIELD = ENRICHMENT_REQUEST_FIELD
"""Set on a document put back to ``pending`` by a requeue, so a re-publish keeps the same message id."""

PUBLISH_CHUNK = 500
"""Payments published (and then marked queued) together."""


def enrichment_request(document: Document, *, now: datetime) -> Envelope[PaymentEnrichmentRequested]:
    """The message for one pending document; its id is stable across retries of the same request."""
    request = document.get(REQUEST_FIELD) or {}
    requeued = request.get("reason") == EnrichmentReason.REQUEUE.value
    message = PaymentEnrichmentRequested(
        payment_id=str(document["PaymentID"]),
        transaction_id=str(document["id"]),
        event_id=str(document["eventId"]),
        requested_at=parse_timestamp(request["at"]) if requeued else now,
        reason=EnrichmentReason.REQUEUE if requeued else EnrichmentReason.NEW,
    )
    # A requeue is keyed by its own stamp (the message's default key).
    key = None if requeued else new_request_key(document)
    return make_envelope(message, key=key, correlation_id=str(document["id"]))


def new_request_key(document: Document) -> str:
    """What a new payment's message id is derived from: the payment, the order and the source's stamp.

    Keyed on the PaymentID alone, the request for a second order of a payment stored after the
    first order's request was published would be dropped by the queue's duplicate detection, and if
    the enricher had already handled the first request (it finds a payment's orders by a query when
    it handles the message), the second order would stay ``queued`` for good. Republishing the same
    pending document (a retry, the repair after a crash) gives the same key, so duplicate detection
    still drops those copies; the source's stamp tells a PaymentID changed back to an earlier value
    from that earlier request.
    """
    stamp = document.get("sourceUpdatedAt") or ""
    return f"{document['PaymentID']}/{document['id']}/{stamp}"


class EnrichmentQueue:
    """Publishes enrichment requests for pending payments and marks them queued."""

    def __init__(
        self, *, publisher: MessagePublisher, writer: TransactionWriter, transactions: DocumentContainer
    ) -> None:
        self._publisher = publisher
        self._writer = writer
        self._transactions = transactions

    async def enqueue(self, documents: Sequence[Document]) -> int:
        """Publish one request per document, then mark them queued; returns how many were marked."""
        payable = [doc for doc in documents if doc.get("PaymentID")]
        if not payable:
            return 0
        now = datetime.now(tz=UTC)
        marked = 0
        for start in range(0, len(payable), PUBLISH_CHUNK):
            envelopes, publishable = [], []
            for document in payable[start : start + PUBLISH_CHUNK]:
                try:
                    envelopes.append(enrichment_request(document, now=now))
                except ValidationError as exc:
                    # A document no message can describe must not block every later run's repair.
                    await self._mark_unresolved(document, reason=f"cannot be queued: {_first_error(exc)}")
                    continue
                publishable.append(document)
            if envelopes:
                await self._publisher.publish(envelopes)
                marked += await self._writer.mark_queued(publishable)
        return marked

    async def _mark_unresolved(self, document: Document, *, reason: str) -> None:
        log.warning(
            "payment cannot be queued; marked unresolved", transaction_id=document.get("id"), reason=reason
        )
        with contextlib.suppress(EtagMismatchError, DocumentNotFoundError):
            await self._transactions.patch(
                str(document["id"]),
                partition_key=document["eventId"],
                operations=[
                    {"op": "set", "path": f"/{STATE_FIELD}", "value": EnrichmentState.UNRESOLVED},
                    {"op": "set", "path": f"/{REASON_FIELD}", "value": reason},
                ],
                etag=document.get("_etag"),
            )

    async def repair(self) -> int:
        """Publish again whatever an interrupted run left ``pending``."""
        pending: list[Document] = []
        published = 0
        async for document in self._transactions.find({STATE_FIELD: EnrichmentState.PENDING}):
            pending.append(document)
            if len(pending) >= PUBLISH_CHUNK:
                published += await self.enqueue(pending)
                pending = []
        published += await self.enqueue(pending)
        if published:
            log.info("re-queued payments left pending", count=published)
        return published

    async def requeue(self, *, state: EnrichmentState) -> int:
        """Put every payment in ``state`` (e.g. ``unresolved``) back in the queue."""
        at = format_timestamp(datetime.now(tz=UTC))
        reset: list[Document] = []
        async for document in self._transactions.find({STATE_FIELD: state}):
            if not document.get("PaymentID"):
                continue
            updated = await self._reset_to_pending(document, at=at)
            if updated is not None:
                reset.append(updated)
        queued = 0
        for start in range(0, len(reset), PUBLISH_CHUNK):
            queued += await self.enqueue(reset[start : start + PUBLISH_CHUNK])
        return queued

    async def _reset_to_pending(self, document: Document, *, at: str) -> Document | None:
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": f"/{STATE_FIELD}", "value": EnrichmentState.PENDING},
            {
                "op": "set",
                "path": f"/{REQUEST_FIELD}",
                "value": {"reason": EnrichmentReason.REQUEUE, "at": at},
            },
        ]
        try:
            return await self._transactions.patch(
                str(document["id"]),
                partition_key=document["eventId"],
                operations=operations,
                etag=document["_etag"],
            )
        except EtagMismatchError:
            return None  # changed meanwhile (enriched, or requeued by someone else): leave it


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
