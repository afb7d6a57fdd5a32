"""Exponential backoff with jitter, shared by publisher retries and consumer reschedules."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Delay before retry number `attempt`: initial * multiplier**(attempt-1), capped, with jitter."""

    initial_seconds: float = 0.5
    maximum_seconds: float = 30.0
    multiplier: float = 2.0
    # Fraction of each delay that is randomized, so that clients failing together do not retry together.
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial_seconds < 0 or self.maximum_seconds < self.initial_seconds:
            raise ValueError("backoff needs 0 <= initial_seconds <= maximum_seconds")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs multiplier >= 1 and 0 <= jitter <= 1")

    def delay_seconds(self, *, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        # Cap before multiplying out so large attempt numbers cannot overflow.
        ceiling = self.initial_seconds
        for _ in range(exponent):
            ceiling = min(ceiling * self.multiplier, self.maximum_seconds)
            if ceiling >= self.maximum_seconds:
                break
        return ceiling * (1 - self.jitter * rand())
