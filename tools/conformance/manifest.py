"""What each SDK sample is expected to do against the stand-ins, read from `<sdk>.toml` beside this file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MANIFEST_DIR = Path(__file__).parent


class Expectation(StrEnum):
    PASS = "pass"  # noqa: S105 - an expected result, not a password
    UNSUPPORTED = "unsupported"
    TIMEOUT = "timeout"  # the sample loops until it is stopped, by design: it must still run at its bound


@dataclass(frozen=True)
class SampleExpectation:
    path: str  # relative to the source distribution's samples folder
    expect: Expectation
    reason: str
    timeout_seconds: float
    output: tuple[str, ...] = ()  # what the run must have printed (a `timeout` sample: what it did first)


@dataclass(frozen=True)
class Manifest:
    sdk: str  # "servicebus" or "cosmos"
    package: str  # the distribution name, e.g. azure-servicebus
    samples_dir: str
    helpers: frozenset[str]  # modules in the samples folder that are imported by samples, not run
    # What samples print when they catch a service error and carry on: exiting 0 after it is a failure.
    failure_output: tuple[str, ...]
    samples: tuple[SampleExpectation, ...]


class ManifestError(ValueError):
    """A manifest entry is missing or malformed."""


def load_manifest(sdk: str) -> Manifest:
    """Read and check `<sdk>.toml`."""
    path = MANIFEST_DIR / f"{sdk}.toml"
    data = tomllib.loads(path.read_text())
    try:
        default_timeout = float(data["timeout_seconds"])
        samples = tuple(
            _sample(name, entry, default_timeout) for name, entry in sorted(data["samples"].items())
        )
        return Manifest(
            sdk=sdk,
            package=str(data["package"]),
            samples_dir=str(data.get("samples_dir", "samples")),
            helpers=frozenset(data.get("helpers", [])),
            failure_output=tuple(str(text) for text in data.get("failure_output", [])),
            samples=samples,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"{path.name}: {error}") from error


def _sample(name: str, entry: dict[str, object], default_timeout: float) -> SampleExpectation:
    expect = Expectation(str(entry["expect"]))
    reason = str(entry.get("reason", ""))
    if expect is not Expectation.PASS and not reason:
        raise ManifestError(f"sample {name!r} is expected {expect.value} without a reason")
    timeout = entry.get("timeout_seconds", default_timeout)
    if not isinstance(timeout, int | float):
        raise ManifestError(f"sample {name!r}: timeout_seconds must be a number")
    output = entry.get("output", [])
    if not isinstance(output, list):
        raise ManifestError(f"sample {name!r}: output must be a list of strings")
    return SampleExpectation(
        path=name,
        expect=expect,
        reason=reason,
        timeout_seconds=float(timeout),
        output=tuple(str(line) for line in output),
    )
