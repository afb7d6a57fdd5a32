"""Export files: the spec's headers in order, and values that read back unchanged."""

from __future__ import annotations

import csv
import re
from typing import TYPE_CHECKING

import pytest

from devstack.scenario import (
    EXPORT_COLUMNS,
    Scenario,
    read_csv,
    read_header,
    read_xlsx,
    write_csv,
    write_xlsx,
)
from devstack.scenario.cli import main

if TYPE_CHECKING:
    from pathlib import Path

US_TIMESTAMP = re.compile(r"^\d\d/\d\d/\d{4} (0\d|1[0-2]):\d\d (AM|PM)$")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return list(Scenario(seed=31, events=4, orders=400).transactions())


def _export_part(row: dict) -> dict:
    return {column: row[column] for column in EXPORT_COLUMNS}


def test_csv_round_trip(tmp_path: Path, rows: list[dict]) -> None:
    path = tmp_path / "export.csv"
    assert write_csv(path, rows) == len(rows)
    assert read_header(path) == list(EXPORT_COLUMNS)
    assert list(read_csv(path)) == [_export_part(r) for r in rows]


def test_csv_booleans_and_nulls_are_written_plainly(tmp_path: Path, rows: list[dict]) -> None:
    path = tmp_path / "export.csv"
    write_csv(path, rows)
    with path.open(encoding="utf-8", newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert {r["IsRefunded"] for r in raw} == {"true", "false"}
    assert {r["IsValid"] for r in raw} == {"true", "false"}
    assert any(r["PaymentID"] == "" for r in raw)
    assert all(r["PurchaseDate"].endswith("Z") for r in raw)


def test_csv_with_us_timestamps(tmp_path: Path, rows: list[dict]) -> None:
    path = tmp_path / "export-us.csv"
    write_csv(path, rows, date_format="us")
    with path.open(encoding="utf-8", newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert all(US_TIMESTAMP.match(r["PurchaseDate"]) for r in raw)
    back = list(read_csv(path))
    for original, reread in zip(rows, back, strict=True):
        # The US format has minutes only.
        assert reread["PurchaseDate"] == original["PurchaseDate"][:16] + ":00Z"
        assert reread["TotalAmount"] == original["TotalAmount"]


def test_xlsx_round_trip(tmp_path: Path, rows: list[dict]) -> None:
    path = tmp_path / "export.xlsx"
    assert write_xlsx(path, rows) == len(rows)
    assert read_header(path) == list(EXPORT_COLUMNS)
    assert list(read_xlsx(path)) == [_export_part(r) for r in rows]


def test_cli_exports_one_event(tmp_path: Path) -> None:
    scenario = Scenario(seed=7, orders=300)
    event_id = scenario.event_ids()[1]
    out = tmp_path / "one-event.csv"
    argv = ["export", "--seed", "7", "--orders", "300", "--format", "csv", "--out", str(out)]
    assert main([*argv, "--event-id", event_id]) == 0
    expected = [_export_part(r) for r in scenario.transactions(event_id=event_id)]
    assert expected
    assert list(read_csv(out)) == expected


def test_cli_exports_xlsx(tmp_path: Path) -> None:
    out = tmp_path / "all.xlsx"
    assert main(["export", "--seed", "7", "--orders", "120", "--format", "xlsx", "--out", str(out)]) == 0
    assert len(list(read_xlsx(out))) == 120


def test_cli_rejects_unknown_event(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--orders", "10", "--event-id", "nope", "--out", str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2
