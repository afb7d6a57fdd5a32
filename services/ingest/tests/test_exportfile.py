"""Reading export files: header variants, streaming, and clear errors for malformed files."""

from __future__ import annotations

import csv
import zipfile

import pytest
from openpyxl import Workbook

from ingest.exportfile import ExportFileError, read_export
from otcommon.schemas import EXPORT_COLUMNS

ROW = {
    **dict.fromkeys(EXPORT_COLUMNS, ""),
    "SN": "1",
    "EventName": "Show",
    "ticketId": "TK-1",
    "TotalTickets": "2",
    "TotalAmount": "40",
    "PurchaseDate": "05/01/2026 07:30 PM",
    "PaymentID": "pi_1",
}


def write_csv(path, header, rows, encoding="utf-8"):
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_header_variants_map_to_export_columns(tmp_path):
    variants = {
        "EventName": "Event Name",
        "ticketId": "ticket_id",
        "TotalTickets": "TOTAL TICKETS",
        "PaymentID": "payment id",
    }
    header_cells = [variants.get(column, column) for column in EXPORT_COLUMNS] + ["Seat"]
    path = write_csv(tmp_path / "a.csv", header_cells, [[*ROW.values(), "A1"]])
    header, rows = read_export(path)
    records = list(rows)
    assert header.ignored == ["Seat"]
    assert records[0].values == ROW
    assert records[0].line == 2


def test_missing_columns_are_named(tmp_path):
    # Defaulting a missing IsValid or PaymentID would silently change every row's meaning.
    columns = [column for column in EXPORT_COLUMNS if column not in {"IsValid", "PaymentID"}]
    path = write_csv(tmp_path / "a.csv", columns, [[ROW[column] for column in columns]])
    with pytest.raises(
        ExportFileError, match=r"missing required column\(s\): IsValid, PaymentID \(header has"
    ):
        read_export(path)


def test_two_headers_for_one_column_are_refused(tmp_path):
    path = write_csv(tmp_path / "a.csv", [*ROW, "Ticket ID"], [[*ROW.values(), "x"]])
    with pytest.raises(ExportFileError, match="both map to ticketId"):
        read_export(path)


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n\n")
    with pytest.raises(ExportFileError, match="is empty"):
        read_export(path)


def test_wrong_encoding_is_reported_with_its_line(tmp_path):
    path = tmp_path / "latin.csv"
    lines = [
        ",".join(ROW),
        ",".join(ROW.values()),
        ",".join([*list(ROW.values())[:-1], "pi_2"]).replace("Show", "Café"),
    ]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    header, rows = read_export(path)
    assert header.columns
    with pytest.raises(ExportFileError, match="not UTF-8 text near line 3 \\(byte 0xe9\\)"):
        list(rows)
    header, rows = read_export(path, encoding="latin-1")
    assert [r.values["EventName"] for r in rows] == ["Show", "Café"]


def test_a_file_named_xlsx_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / "fake.xlsx"
    path.write_text("EventName,ticketId\n")
    with pytest.raises(ExportFileError, match="not a valid XLSX"):
        read_export(path)


def test_xlsx_rows_are_read_with_typed_cells(tmp_path):
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Export")
    sheet.append(list(EXPORT_COLUMNS))
    sheet.append([1, "Show", "TK-1", "Ann", "ann@example.com", 15550102030, "VIP", 2, 40.5])
    path = tmp_path / "export.xlsx"
    workbook.save(path)
    header, rows = read_export(path)
    assert len(header.columns) == len(EXPORT_COLUMNS)
    record = next(iter(rows))
    assert record.values["TotalAmount"] == 40.5
    assert record.values["Phone"] == 15550102030
    assert record.values["PurchaseDate"] is None


def test_empty_xlsx_is_refused(tmp_path):
    workbook = Workbook()
    path = tmp_path / "empty.xlsx"
    workbook.save(path)
    with pytest.raises(ExportFileError, match="is empty"):
        read_export(path)


def test_an_unknown_encoding_is_a_clear_error(tmp_path):
    path = write_csv(tmp_path / "a.csv", list(ROW), [list(ROW.values())])
    with pytest.raises(ExportFileError, match="unknown text encoding 'klingon'"):
        read_export(path, encoding="klingon")


def test_a_corrupt_xlsx_is_a_clear_error(tmp_path):
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Export")
    sheet.append(list(EXPORT_COLUMNS))
    good = tmp_path / "good.xlsx"
    workbook.save(good)
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = data[: len(data) // 2]  # truncated sheet XML
            target.writestr(item, data)
    with pytest.raises(ExportFileError, match=r"broken\.xlsx"):
        read_all(broken)


def read_all(path):
    _, rows = read_export(path)
    return list(rows)
