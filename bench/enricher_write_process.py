"""The enricher's write process as ``bench_enricher.py`` runs it: its Cosmos DB requests counted.

``python bench/enricher_write_process.py COUNTS.json`` runs ``enricher.write_process`` with each
container wrapped in the benchmark's ``CountedContainer``; when its stdin ends, it writes the
counts to COUNTS.json, for the benchmark to add to its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from bench_enricher import CountedContainer

from enricher.settings import EnricherSettings
from enricher.write_process import run
from otcommon.runtime import CONSUMER_GC_THRESHOLDS, tune_garbage_collection
from otcommon.settings import load_settings
from otcommon.telemetry import configure_logging


def main() -> int:
    counts: Counter[str] = Counter()
    settings = load_settings(EnricherSettings)
    configure_logging(level=settings.log_level, fmt="console", service_name="enricher-bench-write-process")
    tune_garbage_collection(CONSUMER_GC_THRESHOLDS)  # as the write process does
    asyncio.run(run(settings, wrap=lambda container: CountedContainer(container, counts)))
    Path(sys.argv[1]).write_text(json.dumps(dict(counts)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
