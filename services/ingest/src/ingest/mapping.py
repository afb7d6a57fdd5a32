"""Source rows to ``TicketTransaction`` documents; rows that fail become quarantine records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from otcommon.enrichment import INITIAL_STATE, REASON_FIELD, STATE_FIELD
from otcommon.normalize import stable_id
from otcommon.schemas import (
    ENRICHMENT_FIELDS,
    ExportRow,
    FieldProblem,
    RowValidationError,
    TicketTransaction,
    format_timestamp,
    parse_timestamp,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

ENRICHMENT_REQUEST_FIELD = "enrichmentRequest"
"""Set on a document put back to ``pending`` by a requeue, so a re-publish keeps the same message id."""

SOURCE_FIELDS_ENRICHER_OWNS = ENRICHMENT_FIELDS | {
    STATE_FIELD,
    REASON_FIELD,
    "stripePayoutId",
    "enrichedAt",
    # A requeue's stamp asks for the payment it was made for: a new PaymentID is a new request.
    ENRICHMENT_REQUEST_FIELD,
}
"""Fields the enricher, the webhooks and a requeue write: a source write never overwrites them, and
drops them all when the PaymentID changes."""

_EXPORT_ROW_KEYS = frozenset(
    key for name, info in ExportRow.model_fields.items() for key in (name, info.alias) if key is not None
)
"""The keys ``ExportRow`` reads from a row: its JSON names and, since it populates by name, its own."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that could not be mapped, with every reason."""

    raw: Mapping[str, Any]
    problems: list[FieldProblem]
    location: str

    @property
    def reasons(self) -> list[str]:
        """``field: reason`` lines (no values: they may be personal data)."""
        return [f"{p.field}: {p.reason}" for p in self.problems]


def map_api_row(raw: Any, *, horizon: datetime | None = None) -> TicketTransaction:
    """An API row (export fields plus ``id``, ``eventId``, ``updatedAt``) as a transaction.

    An ``updatedAt`` later than ``horizon`` is refused: one bogus future stamp would otherwise
    carry the checkpoint past every real change to come.
    """
    if not isinstance(raw, dict):
        raise RowValidationError([FieldProblem(field="row", value=raw, reason="is not a JSON object")])
    problems = [
        FieldProblem(field=field, value=raw.get(field), reason="must be a non-empty string")
        for field in ("id", "eventId")
        if not isinstance(raw.get(field), str) or not raw[field].strip()
    ]
    updated_at: datetime | None = None
    try:
        updated_at = parse_timestamp(raw.get("updatedAt"))
    except ValueError as exc:
        problems.append(FieldProblem(field="updatedAt", value=raw.get("updatedAt"), reason=str(exc)))
    else:
        if horizon is not None and updated_at > horizon:
            problems.append(
                FieldProblem(field="updatedAt", value=raw.get("updatedAt"), reason="is in the future")
            )
    if not problems:
        # One validation pass instead of two (ExportRow, then TicketTransaction from its dump): the
        # same validators run on the same export fields, so the transaction is the same.
        fields = {key: value for key, value in raw.items() if key in _EXPORT_ROW_KEYS}
        fields.update(
            id=str(raw["id"]).strip(),
            event_id=str(raw["eventId"]).strip(),
            source="api",
            source_updated_at=updated_at,
            enrichment_state=INITIAL_STATE if fields.get("PaymentID") else None,
        )
        try:
            transaction = TicketTransaction.model_validate(fields)
        except ValidationError:
            transaction = None  # a bad row: the path below names every problem exactly as it always has
        # The state follows the validated PaymentID; the rare guess that missed (a blank one, say)
        # takes the path below too.
        if transaction is not None and (transaction.enrichment_state == INITIAL_STATE) == bool(
            transaction.payment_id
        ):
            return transaction
    try:
        row = ExportRow.parse(dict(raw))
    except RowValidationError as exc:
        problems.extend(exc.problems)
        raise RowValidationError(problems) from None
    if problems:
        raise RowValidationError(problems)
    return TicketTransaction.from_export_row(
        row,
        transaction_id=str(raw["id"]).strip(),
        event_id=str(raw["eventId"]).strip(),
        source="api",
        source_updated_at=updated_at,
    )


def source_document(transaction: TicketTransaction) -> dict[str, Any]:
    """The part of a transaction document that the source owns (what ingest writes and hashes)."""
    document = transaction.to_json_dict()
    for field in SOURCE_FIELDS_ENRICHER_OWNS:
        document.pop(field, None)
    return document


def quarantine_record(*, source: str, rejected: Rejected) -> dict[str, Any]:
    """A quarantine document: the raw row, where it came from, and every reason it was refused."""
    canonical = json.dumps(rejected.raw, sort_keys=True, default=str)
    return {
        "id": stable_id(source, canonical),
        "source": source,
        "kind": "row",
        "location": rejected.location,
        "reasons": rejected.reasons,
        "problems": [
            {"field": p.field, "value": _jsonable(p.value), "reason": p.reason} for p in rejected.problems
        ],
        "raw": {str(k): _jsonable(v) for k, v in rejected.raw.items()},
        "quarantinedAt": format_timestamp(datetime.now(tz=UTC)),
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
