"""The scenario's modules depend on each other one way, type-only imports included."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import devstack.scenario

PACKAGE = "devstack.scenario"
PACKAGE_DIR = Path(devstack.scenario.__file__).parent


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Sibling modules `path` imports, at run time or for type checking alone."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"{PACKAGE}."):
            found.add(node.module.removeprefix(f"{PACKAGE}."))
    return found


def import_graph() -> dict[str, set[str]]:
    # The package's __init__ re-exports from every module, so it sits above them and is left out.
    paths = {path.stem: path for path in PACKAGE_DIR.glob("*.py") if path.stem != "__init__"}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def test_scenario_modules_have_no_import_cycle() -> None:
    graph = import_graph()
    assert "stripe_world" in graph["generator"], "the graph must see the imports it checks"
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
