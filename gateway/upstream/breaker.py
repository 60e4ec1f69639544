"""A circuit breaker for one upstream: after ``failures`` failures in a row it opens and the
upstream is not called for ``cooldown_s`` (requests fail fast, so a fallback can answer);
then one trial request is let through, and its outcome closes or re-opens it."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("a breaker needs failures >= 1 and a positive cooldown")
        self._limit = failures
        self._cooldown = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    def allow(self) -> bool:
        """Closed, or open long enough for a trial (which re-arms the cooldown)."""
        if self._opened_at is None:
            return True
        if self._clock() - self._opened_at < self._cooldown:
            return False
        self._opened_at = self._clock()  # one trial per cooldown
        return True

    @property
    def retry_after_s(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - self._opened_at))

    def succeeded(self) -> None:
        self._failures, self._opened_at = 0, None

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._limit:
            self._opened_at = self._clock()
