"""Failed authentication, throttled per client address: after ``limit`` failures within
``window_s`` an address gets 429s until the window has passed, so keys cannot be guessed
at line rate. Kept in this process (each replica throttles what reaches it)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from gateway.errors import RateLimitError

MAX_ADDRESSES = 100_000  # addresses remembered at once (the least recent are forgotten)


class FailedAuthThrottle:
    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a throttle needs limit >= 1 and a positive window")
        self._limit, self._window, self._clock = limit, window_s, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        cutoff = self._clock() - self._window
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def check(self, address: str) -> None:
        """Refuse an address that failed too often lately, before its key is even read."""
        times = self._recent(address)
        if len(times) >= self._limit:
            retry = max(1.0, times[0] + self._window - self._clock())
            raise RateLimitError("Too many failed authentication attempts; retry later.",
                                 code="too_many_failed_auth", retry_after=retry)

    def failed(self, address: str) -> None:
        times = self._recent(address)
        times.append(self._clock())
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
