"""Import every module of one workspace member in an environment holding only what it declares.

Run as ``python tools/check_imports.py PACKAGE`` with the interpreter of an environment built by
``uv sync --locked --no-dev --package <member>``: an import the member did not declare fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys


def main() -> int:
    """Import the package and all its submodules; report the first failure of each."""
    name = sys.argv[1]
    package = importlib.import_module(name)
    failures = []
    modules = [name] + [info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}.")]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            failures.append(f"{module}: {exc}")
    for failure in failures:
        print(failure, file=sys.stderr)
    imported = len(modules) - len(failures)
    print(f"{name}: {imported} of {len(modules)} modules import with declared dependencies only")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
