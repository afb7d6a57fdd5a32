"""OpenTickets export files (CSV and XLSX): the 27 columns in the export's order and spelling."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from openpyxl import Workbook, load_workbook

from devstack.scenario.model import (
    AMOUNT_COLUMNS,
    BOOLEAN_COLUMNS,
    EXPORT_COLUMNS,
    INTEGER_COLUMNS,
    TIMESTAMP_COLUMNS,
)
from devstack.scenario.rows import parse_iso_utc

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

DateFormat = Literal["iso", "us"]
US_FORMAT = "%m/%d/%Y %I:%M %p"
_NULLABLE_TEXT = frozenset({"RefundedRemarks", "ReferralCode", "ReferralCodeDiscountType"})


def _us_timestamp(iso: str) -> str:
    return time.strftime(US_FORMAT, time.gmtime(parse_iso_utc(iso)))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _boolean(value: Any) -> str:
    return "true" if value else "false"


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.2f}"
    return str(value)


def _us_or_empty(value: Any) -> str:
    return "" if value is None else _us_timestamp(value)


def _csv_formatters(date_format: DateFormat) -> list[Callable[[Any], str]]:
    # One formatter per column, chosen once: this runs for every cell of a million-row export.
    formatters: list[Callable[[Any], str]] = []
    for column in EXPORT_COLUMNS:
        if column in BOOLEAN_COLUMNS:
            formatters.append(_boolean)
        elif column in AMOUNT_COLUMNS or column in INTEGER_COLUMNS:
            formatters.append(_number)
        elif column in TIMESTAMP_COLUMNS and date_format == "us":
            formatters.append(_us_or_empty)
        else:
            formatters.append(_text)
    return formatters


def write_csv(path: Path | str, rows: Iterable[Mapping[str, Any]], *, date_format: DateFormat = "iso") -> int:
    """Stream rows into a UTF-8 CSV export file; returns the number of rows written."""
    formatters = list(zip(EXPORT_COLUMNS, _csv_formatters(date_format), strict=True))
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow([format_cell(row[column]) for column, format_cell in formatters])
            count += 1
    return count


def _xlsx_cell(column: str, value: Any, date_format: DateFormat) -> Any:
    if date_format == "us" and column in TIMESTAMP_COLUMNS and value is not None:
        return _us_timestamp(value)
    return value


def write_xlsx(
    path: Path | str, rows: Iterable[Mapping[str, Any]], *, date_format: DateFormat = "iso"
) -> int:
    """Stream rows into an XLSX export file (write-only mode); returns the number of rows written."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Transactions")
    sheet.append(list(EXPORT_COLUMNS))
    count = 0
    for row in rows:
        sheet.append([_xlsx_cell(column, row[column], date_format) for column in EXPORT_COLUMNS])
        count += 1
    workbook.save(str(path))
    return count


def _parse_timestamp(text: str) -> str:
    if "/" in text:
        parsed = datetime.strptime(text, US_FORMAT).replace(tzinfo=UTC)
        return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def _typed(column: str, value: Any) -> Any:
    if value is None or value == "":
        return "" if column not in _NULLABLE_TEXT | AMOUNT_COLUMNS | TIMESTAMP_COLUMNS else None
    if column in BOOLEAN_COLUMNS:
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if column in INTEGER_COLUMNS:
        return int(value)
    if column in AMOUNT_COLUMNS:
        return float(value)
    if column in TIMESTAMP_COLUMNS:
        return _parse_timestamp(str(value))
    return str(value)


def read_csv(path: Path | str) -> Iterator[dict[str, Any]]:
    """Rows of an export CSV with the generator's types (US timestamps come back as ISO, minutes only)."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            yield {column: _typed(column, record[column]) for column in EXPORT_COLUMNS}


def read_xlsx(path: Path | str) -> Iterator[dict[str, Any]]:
    """Rows of an export XLSX with the generator's types."""
    workbook = load_workbook(str(path), read_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(cell) for cell in next(rows)]
        for values in rows:
            record = dict(zip(header, values, strict=True))
            yield {column: _typed(column, record[column]) for column in EXPORT_COLUMNS}
    finally:
        workbook.close()


def read_header(path: Path | str) -> list[str]:
    """The header row of a CSV or XLSX export."""
    if str(path).endswith(".xlsx"):
        workbook = load_workbook(str(path), read_only=True)
        try:
            first = next(workbook.worksheets[0].iter_rows(values_only=True))
            return [str(cell) for cell in first]
        finally:
            workbook.close()
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))
