"""The data contract: ``TicketTransaction`` (SPEC section 2) and ``DerivedMetrics`` (section 3).

JSON field names are the dashboard's TypeScript names, so every field has an alias and
documents are always dumped ``by_alias``. Export columns are validated leniently the way
export files write them (``"yes"`` for booleans, US-style dates) and strictly in meaning
(no negative amounts, Stripe ids only). A bad row raises one :class:`RowValidationError`
that lists every bad field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from otcommon import normalize
from otcommon.enrichment import INITIAL_STATE, EnrichmentState

EXPORT_COLUMNS: tuple[str, ...] = (
    "SN",
    "EventName",
    "ticketId",
    "Name",
    "Email",
    "Phone",
    "TicketTypes",
    "TotalTickets",
    "TotalAmount",
    "PurchaseDate",
    "PurchaseFrom",
    "IsRefunded",
    "RefundedRemarks",
    "IsValid",
    "IsDisputed",
    "ReferralCode",
    "ReferralCodeDiscount",
    "ReferralCodeDiscountType",
    "PaymentMethod",
    "PaymentID",
    "TotalScanCount",
    "TotalTicketRedeemed",
    "TicketWasLastScannedTime",
    "TicketRedemptionDateTime",
    "PlatformFee",
    "PaymentProviderFee",
    "TaxFee",
    "OrganizerAmount",
)
"""The export's columns in file order (SPEC section 2)."""

_COLUMN_KEY = re.compile(r"[\s_\-.]+")
_COLUMNS_BY_KEY = {_COLUMN_KEY.sub("", name).casefold(): name for name in EXPORT_COLUMNS}


def canonical_column(header: str) -> str | None:
    """The export column a header names, ignoring case, spaces and underscores ("Ticket ID" -> ticketId)."""
    return _COLUMNS_BY_KEY.get(_COLUMN_KEY.sub("", header.lstrip("\ufeff")).casefold())


# ---------------------------------------------------------------------------------------------
# Lenient parsing of export cells


_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n", ""})
_US_TIMESTAMP_FORMATS = ("%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%m/%d/%Y")


def parse_bool(value: Any) -> bool:
    """true/false, 1/0, yes/no in any case; empty is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and (text := value.strip().casefold()) in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError("expected true/false, yes/no or 1/0")


EARLIEST_YEAR, LATEST_YEAR = 1970, 2100
"""Timestamps outside these years are data errors (and would break the fixed-width format)."""


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 or US-style ``MM/DD/YYYY hh:mm AM/PM``; a timestamp without an offset is UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        parsed = _parse_timestamp_text(value.strip())
    else:
        raise ValueError("expected an ISO 8601 or MM/DD/YYYY hh:mm AM/PM timestamp")
    return utc_within_years(parsed, EARLIEST_YEAR, LATEST_YEAR)


def utc_within_years(parsed: datetime, earliest: int, latest: int) -> datetime:
    """``parsed`` in UTC (naive means UTC), refused with a ``ValueError`` outside the years given."""
    if not earliest <= parsed.year <= latest:
        raise ValueError(f"year must be between {earliest} and {latest}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


def _parse_timestamp_text(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _US_TIMESTAMP_FORMATS:
        try:
            return datetime.strptime(text.upper(), fmt)  # noqa: DTZ007 - offset-less means UTC, set by the caller
        except ValueError:
            continue
    raise ValueError("expected an ISO 8601 or MM/DD/YYYY hh:mm AM/PM timestamp")


def format_timestamp(value: datetime) -> str:
    """UTC, fixed width, millisecond precision: ISO strings then sort and compare as instants."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _optional_timestamp(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_timestamp(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")  # noqa: TRY004 - reported as a field error
    if not isinstance(value, int | float | str) or (isinstance(value, str) and not value.strip()):
        raise ValueError("expected a number")
    try:
        number = float(value.strip().replace(",", "").removeprefix("$") if isinstance(value, str) else value)
    except OverflowError:
        raise ValueError("number out of range") from None
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _amount(value: Any) -> float:
    return round(_number(value), 2)


def _count(value: Any) -> int:
    number = _number(value)
    if not number.is_integer():
        raise ValueError("expected a whole number")
    return int(number)


def _blank_is_zero(parse: Any) -> Any:
    def parse_or_zero(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return 0
        return parse(value)

    return parse_or_zero


def _optional(parse: Any) -> Any:
    def parse_or_none(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return parse(value)

    return parse_or_none


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        # Spreadsheets turn numeric-looking text (phones, ticket ids) into floats.
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value).strip()
    raise ValueError("expected text")


def _required_text(value: Any) -> str:
    text = _text(value)
    if not text:
        raise ValueError("must not be empty")
    return text


def _optional_text(value: Any) -> str | None:
    return _text(value) or None


PAYMENT_ID_PATTERN = re.compile(r"^(pi|ch)_[A-Za-z0-9]{1,250}$")
"""A Stripe PaymentIntent (``pi_``) or Charge (``ch_``) id; messages validate with the same rule."""


def _payment_id(value: Any) -> str:
    text = _text(value)
    if text and not PAYMENT_ID_PATTERN.match(text):
        raise ValueError("must be empty or a Stripe id: pi_ or ch_ followed by letters and digits")
    return text


def _discount_type(value: Any) -> str | None:
    text = _text(value)
    if text in {"", "%", "$"}:
        return text or None
    raise ValueError("must be '%', '$' or empty")


Timestamp = Annotated[
    datetime, BeforeValidator(parse_timestamp), PlainSerializer(format_timestamp, return_type=str)
]
OptionalTimestamp = Annotated[
    datetime | None,
    BeforeValidator(_optional_timestamp),
    PlainSerializer(lambda v: format_timestamp(v) if v else None, return_type=str | None),
]
Bool = Annotated[bool, BeforeValidator(parse_bool)]
Amount = Annotated[float, BeforeValidator(_amount)]
AmountOrZero = Annotated[float, BeforeValidator(_blank_is_zero(_amount))]
OptionalAmount = Annotated[float | None, BeforeValidator(_optional(_amount))]
Count = Annotated[int, BeforeValidator(_count)]
CountOrZero = Annotated[int, BeforeValidator(_blank_is_zero(_count))]
Text = Annotated[str, BeforeValidator(_text)]
RequiredText = Annotated[str, BeforeValidator(_required_text)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]
PaymentId = Annotated[str, BeforeValidator(_payment_id)]
DiscountType = Annotated[Literal["%", "$"] | None, BeforeValidator(_discount_type)]


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One bad field of a row: its column, the value given and why it was refused."""

    field: str
    value: Any
    reason: str


class RowValidationError(ValueError):
    """A row failed validation; ``problems`` lists every bad field (values may be personal data)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        # The message names fields and reasons only: values may be personal data and messages get logged.
        details = "; ".join(f"{p.field}: {p.reason}" for p in problems)
        super().__init__(f"{len(problems)} invalid field(s): {details}")

    @property
    def reasons(self) -> list[str]:
        """``field: reason`` lines without the values, safe to log and count."""
        return [f"{p.field}: {p.reason}" for p in self.problems]

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> RowValidationError:
        """Translate pydantic's errors into field problems named by their JSON names."""
        problems = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "row"
            reason = error["msg"].removeprefix("Value error, ")
            problems.append(FieldProblem(field=field, value=error.get("input"), reason=reason))
        return cls(problems)


# ---------------------------------------------------------------------------------------------
# Models


class ContractModel(BaseModel):
    """JSON names by alias, Python names by attribute; unknown keys are ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON document with the contract's field names."""
        return self.model_dump(mode="json", by_alias=True)


class ExportRow(ContractModel):
    """The 27 columns of an OpenTickets export row (and of an API transaction)."""

    sn: CountOrZero = Field(default=0, alias="SN")
    event_name: RequiredText = Field(alias="EventName")
    ticket_id: RequiredText = Field(alias="ticketId")
    name: Text = Field(default="", alias="Name")
    email: Text = Field(default="", alias="Email")
    phone: Text = Field(default="", alias="Phone")
    ticket_types: Text = Field(default="", alias="TicketTypes")
    total_tickets: Count = Field(alias="TotalTickets")
    total_amount: Amount = Field(alias="TotalAmount")
    purchase_date: Timestamp = Field(alias="PurchaseDate")
    purchase_from: Text = Field(default="", alias="PurchaseFrom")
    is_refunded: Bool = Field(default=False, alias="IsRefunded")
    refunded_remarks: OptionalText = Field(default=None, alias="RefundedRemarks")
    is_valid: Bool = Field(default=False, alias="IsValid")
    is_disputed: Bool = Field(default=False, alias="IsDisputed")
    referral_code: OptionalText = Field(default=None, alias="ReferralCode")
    referral_code_discount: OptionalAmount = Field(default=None, alias="ReferralCodeDiscount")
    referral_code_discount_type: DiscountType = Field(default=None, alias="ReferralCodeDiscountType")
    payment_method: Text = Field(default="", alias="PaymentMethod")
    payment_id: PaymentId = Field(default="", alias="PaymentID")
    total_scan_count: CountOrZero = Field(default=0, alias="TotalScanCount")
    total_ticket_redeemed: CountOrZero = Field(default=0, alias="TotalTicketRedeemed")
    ticket_was_last_scanned_time: OptionalTimestamp = Field(default=None, alias="TicketWasLastScannedTime")
    ticket_redemption_date_time: OptionalTimestamp = Field(default=None, alias="TicketRedemptionDateTime")
    platform_fee: AmountOrZero = Field(default=0.0, alias="PlatformFee")
    payment_provider_fee: AmountOrZero = Field(default=0.0, alias="PaymentProviderFee")
    tax_fee: AmountOrZero = Field(default=0.0, alias="TaxFee")
    organizer_amount: AmountOrZero = Field(default=0.0, alias="OrganizerAmount")

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Self:
        """Validate one row keyed by export column names; raise RowValidationError listing every bad field."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise RowValidationError.from_validation_error(exc) from None

    def export_values(self) -> dict[str, Any]:
        """Only the 27 export columns, in file order, with their JSON names."""
        document = self.model_dump(mode="json", by_alias=True, include=set(ExportRow.model_fields))
        return {column: document[column] for column in EXPORT_COLUMNS}


RouteType = Literal["platform", "connected"]
DepositStatus = Literal["paid", "pending", "failed", "not_traceable"]
SourceBucket = normalize.SourceBucket


class Enrichment(ContractModel):
    """Stripe routing and payout facts written by the enricher and the webhooks (all optional)."""

    stripe_route_type: RouteType | None = None
    stripe_platform_account_id: str | None = None
    stripe_platform_account_name: str | None = None
    stripe_destination_account_id: str | None = None
    stripe_destination_account_name: str | None = None
    stripe_charge_id: str | None = None
    stripe_payment_intent_id: str | None = None
    stripe_balance_transaction_id: str | None = None
    stripe_transfer_id: str | None = None
    stripe_application_fee_amount: float | None = None
    stripe_net_amount: float | None = None
    stripe_currency: str | None = Field(default=None, description="The money fields' currency, lowercase.")
    stripe_available_on: str | None = Field(
        default=None, description="When the funds become available for a payout (ISO date)."
    )
    stripe_payout_status: str | None = Field(default=None, description="Stripe's own payout status.")
    deposit_status: DepositStatus | None = None
    deposit_date: str | None = Field(default=None, description="The payout's arrival_date, ISO date.")
    deposit_bank_name: str | None = None
    deposit_bank_last4: str | None = None


ENRICHMENT_FIELDS: frozenset[str] = frozenset(
    field.alias or name for name, field in Enrichment.model_fields.items()
)
"""JSON names of the Stripe enrichment fields (SPEC section 2)."""


class TicketTransaction(Enrichment, ExportRow):
    """One order as stored in Cosmos DB and served to the dashboard."""

    id: str = Field(min_length=1, description="Source transaction id, or a stable hash for file imports.")
    event_id: str = Field(min_length=1, description="Source event id, or a slug of EventName for files.")
    enrichment_state: EnrichmentState | None = Field(
        default=None, description="None for payments without a PaymentID (box-office cash)."
    )
    enrichment_reason: str | None = Field(default=None, description="Why a payment is unresolved.")
    stripe_payout_id: str | None = None
    source: str = Field(default="api", description="Where the row came from: 'api' or 'file:<name>'.")
    source_updated_at: OptionalTimestamp = Field(default=None, description="The source's last change.")
    enriched_at: OptionalTimestamp = None
    # Normalized copies that filters and search match on; derived, never set by hand.
    ticket_type_list: list[str] = Field(default_factory=list)
    source_bucket: SourceBucket = "other"
    referral_code_normalized: str | None = None
    customer_key: str | None = None
    search_text: str = ""

    @model_validator(mode="after")
    def _derive_normalized(self) -> Self:
        derived = {
            "ticket_type_list": normalize.split_ticket_types(self.ticket_types),
            "source_bucket": normalize.source_bucket(self.purchase_from),
            "referral_code_normalized": normalize.normalize_referral_code(self.referral_code),
            "customer_key": normalize.customer_key(email=self.email, phone=self.phone, name=self.name),
            "search_text": normalize.search_key(
                self.name, self.email, self.phone, self.payment_id, self.ticket_id
            ),
        }
        for key, value in derived.items():
            setattr(self, key, value)
        return self

    @classmethod
    def from_export_row(
        cls,
        row: ExportRow,
        *,
        transaction_id: str | None = None,
        event_id: str | None = None,
        source: str = "api",
        source_updated_at: datetime | None = None,
    ) -> TicketTransaction:
        """A transaction from a validated row; ids default to the file-import rules of SPEC section 2."""
        event = event_id or normalize.slugify(row.event_name) or "unnamed-event"
        return cls.model_validate(
            {
                **row.model_dump(by_alias=False),
                "id": transaction_id or file_transaction_id(row, event_id=event),
                "event_id": event,
                "source": source,
                "source_updated_at": source_updated_at,
                "enrichment_state": INITIAL_STATE if row.payment_id else None,
            }
        )


def file_transaction_id(row: ExportRow, *, event_id: str) -> str:
    """The id of a file-imported row: a hash of its event id, ticketId, PaymentID and PurchaseDate."""
    return normalize.stable_id(
        event_id,
        row.ticket_id,
        row.payment_id,
        format_timestamp(row.purchase_date),
    )


class DerivedMetrics(ContractModel):
    """Aggregates over a filtered set of orders (SPEC section 3); rates are fractions in [0, 1]."""

    tickets_sold: int = 0
    orders_count: int = 0
    gross_revenue: float = 0.0
    organizer_net: float = 0.0
    total_fees: float = 0.0
    refund_count: int = 0
    refund_amount: float = 0.0
    refund_rate: float = 0.0
    dispute_count: int = 0
    dispute_rate: float = 0.0
    valid_tickets_count: int = 0
    valid_rate: float = 0.0
    total_scans: int = 0
    redeemed_tickets: int = 0
    redemption_rate: float = 0.0
    online_count: int = 0
    box_office_count: int = 0
    online_share: float = 0.0
    avg_ticket_price: float = 0.0
    avg_order_value: float = 0.0
    avg_redemption_lag: float = Field(
        default=0.0, description="Mean hours from purchase to redemption over rows with both; 0 when none."
    )
    peak_purchase_hour: int | None = Field(default=None, ge=0, le=23)
    peak_purchase_day: str | None = None
