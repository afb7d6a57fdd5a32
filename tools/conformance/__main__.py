"""Run the official SDK samples against the stand-ins and compare with the manifests (docs/conformance.md).

`python -m tools.conformance [servicebus] [cosmos] [-k TEXT] [--run-unsupported]`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.conformance.manifest import Expectation, load_manifest
from tools.conformance.runner import SampleResult, describe, prepare_workdir, run_sample, unlisted_samples
from tools.conformance.sources import DEFAULT_CACHE, SourceError, pinned_version, unpacked_sdist

SDKS = ("servicebus", "cosmos")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.conformance", description=__doc__)
    parser.add_argument("sdks", nargs="*", metavar="SDK", help=f"one of {', '.join(SDKS)} (default: all)")
    parser.add_argument(
        "-k", dest="filters", action="append", default=[], help="only samples whose path contains TEXT"
    )
    parser.add_argument(
        "--run-unsupported",
        action="store_true",
        help="run the samples expected unsupported too (to find ones that pass now)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where sdists, copies and logs go")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sdks) - set(SDKS))
    if unknown:
        parser.error(f"unknown SDK {', '.join(unknown)}: choose from {', '.join(SDKS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected samples; exit 1 when any result differs from its expectation."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    results: list[SampleResult] = []
    problems: list[str] = []
    for sdk in args.sdks or SDKS:
        manifest = load_manifest(sdk)
        try:
            version = pinned_version(manifest.package)
            sdist = unpacked_sdist(manifest.package, version, args.cache)
        except SourceError as error:
            problems.append(str(error))
            continue
        samples_root = prepare_workdir(manifest, sdist, args.cache / "work")
        unlisted = unlisted_samples(manifest, samples_root)
        problems += [f"{sdk}: {path} is not in {sdk}.toml" for path in unlisted]
        print(f"== {manifest.package} {version} samples")
        for sample in manifest.samples:
            if args.filters and not any(text in sample.path for text in args.filters):
                continue
            result = run_sample(
                manifest, sample, samples_root, args.cache / "logs", run_unsupported=args.run_unsupported
            )
            results.append(result)
            print(describe(result), flush=True)
    return _summary(results, problems)


def _summary(results: list[SampleResult], problems: list[str]) -> int:
    differ = [result for result in results if not result.as_expected]
    passed = sum(result.actual == "pass" for result in results)
    unsupported = sum(result.sample.expect is Expectation.UNSUPPORTED for result in results)
    seconds = sum(result.seconds for result in results)
    print(
        f"== {len(results)} samples: {len(results) - len(differ)} as expected, {len(differ)} differ; "
        f"{passed} passed, {unsupported} expected unsupported; {seconds:.0f} s of samples"
    )
    for problem in problems:
        print(f"!! {problem}")
    return 1 if differ or problems else 0


if __name__ == "__main__":
    sys.exit(main())
