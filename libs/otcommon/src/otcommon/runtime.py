"""How a long-running service process sets up the interpreter before it serves."""

from __future__ import annotations

import gc

SERVER_GC_THRESHOLDS = (100_000, 50, 1000)
"""The cyclic garbage collector's thresholds while serving (CPython's default: 700, 10, 10)."""

CONSUMER_GC_THRESHOLDS = (1_000_000, 50, 1000)
"""The thresholds of a queue consumer holding a backlog in flight (the enricher).

Each young collection walks every container object allocated since the last one and still alive.
A cold start of 10,000 payments in flight grows the heap by about a million of them (answers held
by waiting messages, the indexes' memory): at 100,000 that was 9 collections of 100 to 130 ms,
0.9 to 1.2 CPU-seconds of the cold start; at 1,000,000 none ran during it (``bench/bench_enricher.py``
records the collections of each pass). The price is memory (cycles wait longer: the benchmark's
peak grew by about 70 MB) and, when a collection runs, a longer pause; no answer waits on a
consumer's pause, unlike the webhook service's, which keeps ``SERVER_GC_THRESHOLDS``.
"""


def tune_garbage_collection(thresholds: tuple[int, int, int] = SERVER_GC_THRESHOLDS) -> None:
    """Collect cycles less often than CPython's default, as long-running servers do.

    A service parses thousands of Stripe and Cosmos DB answers (millions of short-lived dicts)
    while hundreds of requests or messages are in flight, and every collection walks what is alive:
    with the default thresholds the collector took a third of the enricher's CPU with 1,024 messages
    in flight, and 5% of the webhook service's answering. The services make few reference cycles,
    so collecting them rarely costs little memory.
    """
    gc.set_threshold(*thresholds)
