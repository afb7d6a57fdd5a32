"""Check that one workspace member imports only what it declares.

Run as ``python tools/check_imports.py PACKAGE`` with the interpreter of an environment built by
``uv sync --locked --no-dev --package <member>``. Two checks:

- every module of the package imports there, so a module-level import of something not installed fails;
- every absolute import in the package's source, inside functions and ``TYPE_CHECKING`` blocks too,
  comes from the member itself, the standard library, or a distribution the member declares. Packages
  that arrive only through another dependency (``azure-identity`` through ``otcommon``) are installed
  but undeclared, which only this check sees.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pkgutil
import re
import sys
from pathlib import Path, PurePosixPath

_MODULE_SUFFIXES = frozenset({".py", ".pyi", ".so", ".pyd"})
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def module_owners() -> dict[tuple[str, ...], set[str]]:
    """Each installed module (as dotted parts) -> the distributions whose files provide it."""
    owners: dict[tuple[str, ...], set[str]] = {}
    for dist in importlib.metadata.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or ():
            path = PurePosixPath(str(file))
            if path.suffix not in _MODULE_SUFFIXES or ".." in path.parts:
                continue
            # Extension modules carry a platform tag: `_speedups.cpython-311-x86_64-linux-gnu.so`.
            parts = (*path.parts[:-1], path.name.split(".", 1)[0])
            if parts[-1] == "__init__":
                parts = parts[:-1]
            owners.setdefault(parts, set()).add(name)
    return owners


def distributions_of(module: str, owners: dict[tuple[str, ...], set[str]]) -> set[str]:
    """The distributions providing `module` (its longest installed prefix); empty when none does."""
    parts = tuple(module.split("."))
    for end in range(len(parts), 0, -1):
        if found := owners.get(parts[:end]):
            return found
    # Workspace members are installed editable: no module files, only a distribution of their name.
    try:
        return {normalize(importlib.metadata.distribution(parts[0]).metadata["Name"])}
    except importlib.metadata.PackageNotFoundError:
        return set()


def declared_distributions(package: str) -> set[str]:
    """The member itself and every distribution it requires, extras left out."""
    declared = {normalize(package)}
    for requirement in importlib.metadata.requires(package) or ():
        if "extra ==" in requirement:
            continue
        if match := _REQUIREMENT_NAME.match(requirement):
            declared.add(normalize(match.group(1)))
    return declared


def absolute_imports(source: Path) -> set[str]:
    """Every absolute import in `source`, as dotted module names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from opentelemetry import trace` imports a submodule of a namespace package, whose
            # distribution only the full name finds; a name that is no module falls back to its package.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def undeclared_imports(package: str, package_dir: Path) -> list[str]:
    """One line per distribution the member imports from without declaring it, naming the files."""
    owners = module_owners()
    declared = declared_distributions(package)
    # distribution (or the top-level name nothing installs) -> files importing it
    undeclared: dict[str, set[str]] = {}
    missing: dict[str, set[str]] = {}
    for source in sorted(package_dir.rglob("*.py")):
        where = str(source.relative_to(package_dir.parent))
        for module in absolute_imports(source):
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names or top == package:
                continue
            providers = distributions_of(module, owners)
            if not providers:
                missing.setdefault(top, set()).add(where)
            elif not providers & declared:
                undeclared.setdefault(" or ".join(sorted(providers)), set()).add(where)
    return [
        *(
            f"{package} imports {top}, which no declared dependency installs: {', '.join(sorted(files))}"
            for top, files in sorted(missing.items())
        ),
        *(
            f"{package} does not declare {name}, imported by {', '.join(sorted(files))}"
            for name, files in sorted(undeclared.items())
        ),
    ]


def unimportable_modules(package: str) -> tuple[list[str], int]:
    """Modules of the package that fail to import, and how many modules there are."""
    root = importlib.import_module(package)
    found = pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
    # Importing an entry point runs its program; its imports still get the source check.
    modules = [package] + [info.name for info in found if not info.name.endswith(".__main__")]
    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            failures.append(f"{module}: {exc}")
    return failures, len(modules)


def main() -> int:
    """Run both checks on the package named on the command line; report every failure."""
    package = sys.argv[1]
    failures, count = unimportable_modules(package)
    package_dir = Path(importlib.import_module(package).__path__[0])
    failures += undeclared_imports(package, package_dir)
    for failure in failures:
        print(failure, file=sys.stderr)
    status = "fails" if failures else "imports"
    print(f"{package}: {count} modules; {status} with declared dependencies only")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
