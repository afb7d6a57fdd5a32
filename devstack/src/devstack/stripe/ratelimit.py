"""A per-account request rate limit over a sliding one-second window, as Stripe limits each account."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

WINDOW_SECONDS = 1.0


class RateLimiter:
    """Admits at most `per_second` requests per key in any one-second window."""

    def __init__(self, *, per_second: int, clock: Callable[[], float]) -> None:
        self.per_second = per_second
        self._clock = clock
        self._admitted: defaultdict[str, deque[float]] = defaultdict(deque)

    def admit(self, key: str) -> bool:
        """Whether a request on `key` may go ahead now (and count it if so)."""
        now = self._clock()
        admitted = self._admitted[key]
        while admitted and admitted[0] <= now - WINDOW_SECONDS:
            admitted.popleft()
        if len(admitted) >= self.per_second:
            return False
        admitted.append(now)
        return True
