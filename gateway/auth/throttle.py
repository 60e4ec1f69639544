"""Failed authentication, throttled per client address: after ``limit`` failures within
``window_s``, an address's further *failures* get 429s instead of 401s until the oldest
failure leaves the window, so keys cannot be guessed at line rate. Only failures are
throttled: a token is always checked first, and one that verifies is never refused here, so
clients sharing an address (behind a proxy the gateway does not trust, a NAT) cannot lock
each other out. The address is the client's after trusted proxies' ``X-Forwarded-For`` is
resolved (uvicorn's ``forwarded_allow_ips``, the ``forwarded_allow_ips`` setting). Kept in
this process (each replica throttles what reaches it)."""

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

    def failed(self, address: str) -> None:
        """Count a failed authentication from ``address``; one past its budget is refused
        with a 429 (and not counted: an address holds at most ``limit`` entries)."""
        times = self._recent(address)
        if len(times) >= self._limit:
            retry = max(1.0, times[0] + self._window - self._clock())
            raise RateLimitError("Too many failed authentication attempts; retry later.",
                                 code="too_many_failed_auth", retry_after=retry)
        times.append(self._clock())
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
