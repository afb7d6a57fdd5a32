"""Fetch the source distribution of a pinned SDK at run time, into a cache the repository ignores."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPOSITORY / ".conformance"


class SourceError(RuntimeError):
    """The SDK's source distribution could not be found, fetched or unpacked."""


def pinned_version(package: str, pyproject: Path = REPOSITORY / "pyproject.toml") -> str:
    """The exact version `constraint-dependencies` pins for `package`."""
    constraints = tomllib.loads(pyproject.read_text())["tool"]["uv"]["constraint-dependencies"]
    pattern = re.compile(rf"^{re.escape(package)}==([^\s;]+)")
    for constraint in constraints:
        if match := pattern.match(constraint):
            return match.group(1)
    raise SourceError(f"{package} has no exact pin in {pyproject.name}'s constraint-dependencies")


def unpacked_sdist(package: str, version: str, cache: Path) -> Path:
    """The unpacked source distribution, downloaded with pip on first use."""
    stem = f"{package.replace('-', '_')}-{version}"
    unpacked = cache / "sdists" / stem
    if unpacked.is_dir():
        return unpacked
    downloads = cache / "downloads"
    archive = downloads / f"{stem}.tar.gz"
    if not archive.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        command = [
            *_pip(), "download", "--no-deps", "--no-binary", ":all:", "--dest", str(downloads),
            f"{package}=={version}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0 or not archive.is_file():
            raise SourceError(f"pip could not download {package}=={version}:\n{result.stderr[-2000:]}")
    staging = cache / "sdists" / f".{stem}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as bundle:
        bundle.extractall(staging, filter="data")
    (staging / stem).rename(unpacked)
    shutil.rmtree(staging)
    return unpacked


def _pip() -> list[str]:
    """A pip to download with: this interpreter's, else the one on PATH (uv environments have none)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if found := shutil.which(name):
            return [found]
    raise SourceError("pip is needed to download the SDK source distributions; none was found")
