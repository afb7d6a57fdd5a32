"""Run each selected sample against a fresh stand-in, compare with the manifest, print one line each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tools.conformance.manifest import Expectation, Manifest, SampleExpectation
from tools.conformance.rewrite import rewrite_cosmos, rewrite_servicebus
from tools.conformance.standins import cosmos_environment, servicebus_environment

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable
    from pathlib import Path

NOT_RUN = "not run"
_REWRITERS: dict[str, Callable[[str], tuple[str, int]]] = {
    "servicebus": rewrite_servicebus,
    "cosmos": rewrite_cosmos,
}
_ENVIRONMENTS: dict[str, Callable[[], contextlib.AbstractContextManager[dict[str, str]]]] = {
    "servicebus": servicebus_environment,
    "cosmos": cosmos_environment,
}
_TAIL_LINES = 15


@dataclass(frozen=True)
class SampleResult:
    sample: SampleExpectation
    actual: str  # "pass", "fail" (also exit 0 after printing a caught error), "timeout", "not run"
    seconds: float
    log: Path | None

    @property
    def as_expected(self) -> bool:
        if self.actual == NOT_RUN:
            return self.sample.expect is Expectation.UNSUPPORTED
        return self.actual == self.sample.expect.value or (
            self.sample.expect is Expectation.UNSUPPORTED and self.actual != "pass"
        )


def prepare_workdir(manifest: Manifest, sdist: Path, workdir: Path) -> Path:
    """Copy the samples folder out of the source distribution; samples are rewritten when they run."""
    target = workdir / manifest.sdk
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(sdist / manifest.samples_dir, target)
    return target


def unlisted_samples(manifest: Manifest, samples_root: Path) -> list[str]:
    """Python files in the samples folder that the manifest neither lists nor names as helpers."""
    listed = {sample.path for sample in manifest.samples} | manifest.helpers
    found = sorted(str(path.relative_to(samples_root)) for path in samples_root.rglob("*.py"))
    return [path for path in found if path not in listed]


def run_sample(
    manifest: Manifest, sample: SampleExpectation, samples_root: Path, logs: Path, *, run_unsupported: bool
) -> SampleResult:
    """Run one sample (unless it is expected unsupported) and classify what happened."""
    if sample.expect is Expectation.UNSUPPORTED and not run_unsupported:
        return SampleResult(sample, NOT_RUN, 0.0, None)
    script = samples_root / sample.path
    source, _ = _REWRITERS[manifest.sdk](script.read_text())
    rewritten = script.with_name(f"conformance_{script.name}")
    rewritten.write_text(source)
    log = logs / manifest.sdk / f"{sample.path.replace('/', '__')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _ENVIRONMENTS[manifest.sdk]() as environment, log.open("w") as output:
        try:
            finished = subprocess.run(  # noqa: S603 - runs this interpreter on a sample it just wrote
                [sys.executable, rewritten.name],
                cwd=rewritten.parent,
                env={**os.environ, **environment, "PYTHONUNBUFFERED": "1"},
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=sample.timeout_seconds,
                check=False,
            )
            actual = "pass" if finished.returncode == 0 else "fail"
        except subprocess.TimeoutExpired:
            actual = "timeout"
    printed = log.read_text(errors="replace")
    if actual == "pass" and any(text in printed for text in manifest.failure_output):
        actual = "fail"  # it caught a service error and carried on
    if actual in {"pass", "timeout"} and not all(text in printed for text in sample.output):
        actual = "fail"  # it did not get as far as the manifest says it must
    return SampleResult(sample, actual, time.monotonic() - started, log)


def describe(result: SampleResult) -> str:
    """One report line: sample, expected, actual, seconds (and the reason when unsupported)."""
    sample = result.sample
    mark = "" if result.as_expected else "  <-- differs"
    reason = f"  ({sample.reason})" if sample.reason else ""
    columns = f"{sample.path:<70} {sample.expect.value:<12} {result.actual:<8} {result.seconds:7.1f}s"
    line = columns + mark + reason
    if not result.as_expected and result.log is not None:
        tail = result.log.read_text(errors="replace").splitlines()[-_TAIL_LINES:]
        line += "\n" + "\n".join(f"    | {text}" for text in tail) + f"\n    (full output: {result.log})"
    return line
