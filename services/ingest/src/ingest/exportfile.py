"""Reading OpenTickets export files (CSV and XLSX) as a stream of rows keyed by export column.

Headers are matched loosely (case, spaces, underscores: ``Ticket ID`` and ``ticket_id`` are
``ticketId``). Files are read row by row, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import codecs
import csv
import zipfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from otcommon.schemas import EXPORT_COLUMNS, canonical_column

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Every column is required: a missing IsRefunded or PaymentID would silently default every row.
REQUIRED_COLUMNS = EXPORT_COLUMNS


class ExportFileError(Exception):
    """The file cannot be read as an export; the message says why, for a person."""


@dataclass
class ExportHeader:
    """How the file's header maps onto export columns."""

    columns: dict[int, str]
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """One data row: where it is in the file, and its cells by export column."""

    line: int
    values: dict[str, Any]


def map_header(cells: list[Any]) -> ExportHeader:
    """Match header cells to export columns; missing required or repeated columns are errors."""
    columns: dict[int, str] = {}
    ignored: list[str] = []
    seen: dict[str, str] = {}
    for index, cell in enumerate(cells):
        header = "" if cell is None else str(cell).strip()
        if not header:
            continue
        column = canonical_column(header)
        if column is None:
            ignored.append(header)
            continue
        if column in seen:
            raise ExportFileError(f"columns {seen[column]!r} and {header!r} both map to {column}")
        seen[column] = header
        columns[index] = column
    missing = [column for column in REQUIRED_COLUMNS if column not in seen]
    if missing:
        found = ", ".join(repr(str(c)) for c in cells if c not in (None, "")) or "none"
        raise ExportFileError(f"missing required column(s): {', '.join(missing)} (header has: {found})")
    return ExportHeader(columns=columns, ignored=ignored)


def file_kind(path: Path) -> str:
    """``csv`` or ``xlsx``, from the content (an XLSX is a zip archive), else the extension."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ExportFileError(f"cannot open {path.name}: {exc.strerror}") from None
    if magic.startswith(b"PK\x03\x04"):
        return "xlsx"
    if path.suffix.casefold() in {".xlsx", ".xlsm"}:
        raise ExportFileError(f"{path.name} is not a valid XLSX file (not a zip archive)")
    return "csv"


def read_export(path: Path, *, encoding: str = "utf-8-sig") -> tuple[ExportHeader, Iterator[ExportRecord]]:
    """The header mapping and an iterator of rows; raises ExportFileError for unreadable files."""
    if file_kind(path) == "xlsx":
        return _read_xlsx(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ExportFileError(f"unknown text encoding {encoding!r}") from None
    return _read_csv(path, encoding=encoding)


def _read_csv(path: Path, *, encoding: str) -> tuple[ExportHeader, Iterator[ExportRecord]]:
    handle = path.open("rb")
    try:
        reader = csv.reader(_decoded_lines(handle, encoding=encoding, name=path.name))
        header = map_header(_first_row(reader, path))
    except BaseException:
        handle.close()
        raise

    def rows() -> Iterator[ExportRecord]:
        with handle:
            try:
                for cells in reader:
                    if any(cell.strip() for cell in cells):
                        yield ExportRecord(line=reader.line_num, values=_pick(header, cells))
            except csv.Error as exc:
                raise ExportFileError(f"{path.name} line {reader.line_num}: malformed CSV: {exc}") from None

    return header, rows()


def _decoded_lines(handle: IO[bytes], *, encoding: str, name: str) -> Iterator[str]:
    # Decoding line by line names the physical line of a bad byte, whatever the buffering.
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            label = encoding.removesuffix("-sig").upper()
            raise ExportFileError(
                f"{name} is not {label} text near line {number} (byte 0x{raw[exc.start]:02x}); "
                "export it as UTF-8, or pass --encoding"
            ) from None


def _first_row(reader: Any, path: Path) -> list[Any]:
    try:
        for cells in reader:
            if any(str(cell).strip() for cell in cells):
                return list(cells)
    except csv.Error as exc:
        raise ExportFileError(f"{path.name}: malformed CSV header: {exc}") from None
    raise ExportFileError(f"{path.name} is empty: no header row")


def _read_xlsx(path: Path) -> tuple[ExportHeader, Iterator[ExportRecord]]:
    from openpyxl import load_workbook  # noqa: PLC0415 - only XLSX imports need it
    from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

    # ParseError, raised for broken sheet XML, is a SyntaxError.
    unreadable = (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, SyntaxError)
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except unreadable as exc:
        raise ExportFileError(f"{path.name} is not a readable XLSX workbook: {exc}") from None
    try:
        header, values, line = _xlsx_header(workbook, path)
    except unreadable as exc:
        workbook.close()
        raise ExportFileError(f"{path.name} is not a readable XLSX workbook: {exc}") from None
    except ExportFileError:
        workbook.close()
        raise

    def rows() -> Iterator[ExportRecord]:
        number = line
        try:
            for cells in values:
                number += 1
                if any(cell not in (None, "") for cell in cells):
                    yield ExportRecord(line=number, values=_pick(header, list(cells)))
        except unreadable as exc:
            raise ExportFileError(
                f"{path.name}: the sheet is unreadable after line {number}: {exc}"
            ) from None
        finally:
            workbook.close()

    return header, rows()


def _xlsx_header(workbook: Any, path: Path) -> tuple[ExportHeader, Iterator[Any], int]:
    """The first sheet's header mapping, its remaining rows, and the header's line number."""
    if not workbook.worksheets:
        raise ExportFileError(f"{path.name} has no worksheet")
    sheet = workbook.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    for line, cells in enumerate(values, start=1):
        if any(cell not in (None, "") for cell in cells):
            return map_header(list(cells)), values, line
    raise ExportFileError(f"{path.name} is empty: no header row in sheet {sheet.title!r}")


def _pick(header: ExportHeader, cells: list[Any]) -> dict[str, Any]:
    return {column: cells[index] if index < len(cells) else None for index, column in header.columns.items()}
