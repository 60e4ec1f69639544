"""Redis as the gateway uses it: every call bounded in time, an outage never a hang.

``connect`` gives each command a connect and a read timeout and one immediate retry on a
fresh connection (a Redis that restarted leaves broken connections in the pool). A
``RedisGuard`` bounds a whole call by a deadline as well (a blackholed Redis that accepts
and never answers costs at most that), turns any failure into ``RedisUnavailable``, and
for ``cooldown_s`` after one answers at once instead of waiting on Redis again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
COOLDOWN_S = 1.0


class RedisUnavailable(Exception):
    """Redis did not answer in time, refused the connection or failed the command."""


def connect(url: str, timeout_s: float) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` with the timeouts and the one retry."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    return Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                          retry=Retry(NoBackoff(), 1))


class RedisGuard:
    def __init__(self, timeout_s: float, cooldown_s: float = COOLDOWN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if timeout_s <= 0 or cooldown_s < 0:
            raise ValueError("timeout_s must be > 0 and cooldown_s >= 0")
        self.deadline_s = 3 * timeout_s  # connect and read, then the retry's connect
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._down_until = 0.0

    @property
    def cooling_down(self) -> bool:
        return self._clock() < self._down_until

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        if self.cooling_down:
            raise RedisUnavailable("Redis failed moments ago; not asking again yet")
        try:
            async with asyncio.timeout(self.deadline_s):
                return await command()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = self._clock() + self.cooldown_s
            raise RedisUnavailable(f"Redis is unavailable: {type(exc).__name__}") from exc
