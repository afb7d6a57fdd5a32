"""The lines between the enricher and its write process: a payment's fields out, what was written back.

One JSON object per line, each way (``enricher/write_process.py`` says why there is such a
process). The enricher numbers its requests; each answer names the request it answers, in whatever
order the writes end:

- request: ``{"n": 7, "paymentId": "ch_...", "fields": {...}}``
- answer: ``{"n": 7, "written": [{"id": ..., "eventId": ..., "changedFields": [...], "enrichedAt": ...}]}``
- failed: ``{"n": 7, "error": "failed", "description": "..."}``, or for a lost ETag race
  ``{"n": 7, "error": "etag-mismatch", "container": "...", "documentId": "..."}``
- once, when the write process has opened Cosmos DB: ``{"ready": true}``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from enricher.writer import WrittenTransaction

ETAG_MISMATCH: Literal["etag-mismatch"] = "etag-mismatch"
FAILED: Literal["failed"] = "failed"
READY_LINE = b'{"ready":true}\n'
MAX_LINE_BYTES = 4 * 1024 * 1024
"""The longest line either side reads (a payment's fields, or the transactions of one payment)."""


class MalformedLineError(Exception):
    """A line that is not what the other side sends."""


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Write ``fields`` on every transaction of the payment (``EnrichmentWriter.apply``)."""

    number: int
    payment_id: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """Why a request wrote nothing: a lost ETag race, or anything else (with its description)."""

    kind: Literal["etag-mismatch", "failed"]
    description: str = ""
    container: str = ""
    """For a lost ETag race: the container and document whose ETag changed."""
    document_id: str = ""


@dataclass(frozen=True, slots=True)
class WriteAnswer:
    """The answer to request ``number``: what was written, or why nothing was."""

    number: int
    written: list[WrittenTransaction] | None = None
    failure: WriteFailure | None = None


def encode_request(request: WriteRequest) -> bytes:
    """One request line."""
    line = {"n": request.number, "paymentId": request.payment_id, "fields": request.fields}
    return _line(line)


def decode_request(line: bytes) -> WriteRequest:
    """The request a line carries; MalformedLineError when it carries none."""
    fields = _object(line)
    number, payment_id, values = fields.get("n"), fields.get("paymentId"), fields.get("fields")
    if not isinstance(number, int) or isinstance(number, bool):
        raise MalformedLineError("a request needs n, an integer")
    if not isinstance(payment_id, str) or not isinstance(values, dict):
        raise MalformedLineError("a request needs paymentId (a string) and fields (an object)")
    return WriteRequest(number=number, payment_id=payment_id, fields=values)


def request_number(line: bytes) -> int | None:
    """The number a malformed request line still names, if any (so that its sender hears of it)."""
    try:
        number = json.loads(line).get("n")
    except (ValueError, AttributeError):
        return None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def encode_answer(answer: WriteAnswer) -> bytes:
    """One answer line."""
    if (failure := answer.failure) is not None:
        if failure.kind == ETAG_MISMATCH:
            return _line(
                {
                    "n": answer.number,
                    "error": ETAG_MISMATCH,
                    "container": failure.container,
                    "documentId": failure.document_id,
                }
            )
        return _line({"n": answer.number, "error": FAILED, "description": failure.description})
    written = [
        {
            "id": each.transaction_id,
            "eventId": each.event_id,
            "changedFields": list(each.changed_fields),
            "enrichedAt": each.enriched_at,
        }
        for each in answer.written or ()
    ]
    return _line({"n": answer.number, "written": written})


def decode_answer(line: bytes) -> WriteAnswer:
    """The answer a line carries; MalformedLineError when it carries none."""
    fields = _object(line)
    number = fields.get("n")
    if not isinstance(number, int) or isinstance(number, bool):
        raise MalformedLineError("an answer needs n, an integer")
    if (kind := fields.get("error")) == ETAG_MISMATCH:
        container, document_id = str(fields.get("container", "")), str(fields.get("documentId", ""))
        return WriteAnswer(
            number, failure=WriteFailure(ETAG_MISMATCH, container=container, document_id=document_id)
        )
    if kind == FAILED:
        return WriteAnswer(
            number, failure=WriteFailure(FAILED, description=str(fields.get("description", "")))
        )
    if kind is not None:
        raise MalformedLineError(f"unknown error kind {str(kind)[:40]!r}")
    written = fields.get("written")
    if not isinstance(written, list):
        raise MalformedLineError("an answer needs written (a list) or error")
    try:
        return WriteAnswer(
            number=number,
            written=[
                WrittenTransaction(
                    transaction_id=str(each["id"]),
                    event_id=str(each["eventId"]),
                    changed_fields=tuple(str(name) for name in each["changedFields"]),
                    enriched_at=each["enrichedAt"],
                )
                for each in written
            ],
        )
    except (KeyError, TypeError) as error:
        raise MalformedLineError(f"a written transaction lacks {error}") from None


def _line(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(line)
    except ValueError as error:
        raise MalformedLineError(f"not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise MalformedLineError("not a JSON object")
    return fields
