"""Re-resolve the workspace to the newest allowed versions and record them as exact constraints.

``uv.lock`` is generated on each machine from these constraints (``make setup``), so every
machine installs the same versions without the repository carrying a lock file full of
download addresses. Run ``make pins`` to upgrade, review the diff of pyproject.toml, commit.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
BLOCK = re.compile(r"(constraint-dependencies = \[\n)(.*?)(\])", re.DOTALL)


def run(*args: str) -> str:
    """Run a uv command in the workspace root and return its output."""
    return subprocess.run(["uv", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout  # noqa: S603, S607


def main() -> int:
    """Clear the pins, resolve afresh, write the resolved versions back as pins."""
    original = PYPROJECT.read_text()
    if not BLOCK.search(original):
        print("pyproject.toml has no constraint-dependencies block", file=sys.stderr)
        return 1
    PYPROJECT.write_text(BLOCK.sub(r"\1\3", original))
    try:
        run("lock", "--upgrade")
        exported = run(
            "export",
            "--all-packages",
            "--all-groups",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--no-emit-workspace",
            "--format",
            "requirements-txt",
        )
    except subprocess.CalledProcessError as exc:
        PYPROJECT.write_text(original)
        print(exc.stderr, file=sys.stderr)
        return 1
    pins = sorted(line.strip() for line in exported.splitlines() if "==" in line)
    body = "".join(f'    "{pin}",\n' for pin in pins)
    PYPROJECT.write_text(BLOCK.sub(lambda m: m.group(1) + body + m.group(3), original))
    print(f"pinned {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
