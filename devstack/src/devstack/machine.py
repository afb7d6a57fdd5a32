"""How fast this machine runs Python at the moment, recorded by the benchmarks beside their figures.

On a shared machine the same work can take twice the CPU time from one hour to the next (other
tenants, frequency scaling); a benchmark's wall times and CPU seconds compare across runs only
with the machine's speed beside them. The measure is a busy loop of one Python thread.
"""

from __future__ import annotations

import time


def busy_loop_rate(seconds: float = 1.0) -> float:
    """Millions of iterations a second of a busy loop of one Python thread, over ``seconds``."""
    iterations = 0
    started = time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        iterations += 1
    return round(iterations / (now - started) / 1e6, 2)
