"""Test modules are imported by basename (pytest's default import mode, no packages), so two test files
or helper modules with one name in different members break collection of the whole suite."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_DIRS = [
    ROOT / "tests",
    ROOT / "devstack/tests",
    *ROOT.glob("libs/*/tests"),
    *ROOT.glob("services/*/tests"),
]


def test_every_test_and_helper_module_name_is_unique_across_the_workspace():
    names = Counter(
        path.name
        for directory in TEST_DIRS
        for path in directory.rglob("*.py")
        if path.name not in {"conftest.py", "__init__.py"} and "node_modules" not in path.parts
    )
    assert [name for name, count in names.items() if count > 1] == []
