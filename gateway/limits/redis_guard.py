"""Redis as the gateway uses it: every call bounded in time, an outage never a hang.

``connect`` gives each command a connect and a read timeout and one immediate retry on a
fresh connection (a Redis that restarted leaves broken connections in the pool). A
``RedisGuard`` bounds a whole call by a deadline as well (a blackholed Redis that accepts
and never answers costs at most that), turns any failure into ``RedisUnavailable``, and
for ``cooldown_s`` after one answers at once instead of waiting on Redis again.

A deadline measured on a loop that is itself behind would blame Redis for the gateway's
own load: on a saturated 2-core box (256 clients, each loop turn hundreds of ms) Redis's
answer sits unread while the timer fires, and the cool-down then refused every limited
request for a second (271 of them in one bench level). So the guard's clients read without
a per-read timeout (``bounded_by_guard``), and when the deadline's wake-up itself comes
late (the loop is behind by more than ``LOOP_BEHIND_S``), the call is given that much
longer again, up to ``STRETCH`` times the deadline in all. A blackholed Redis on a loop
that keeps time still fails at the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("llm_gateway.limits")
COOLDOWN_S = 1.0
LOOP_BEHIND_S = 0.05  # a wake-up this late: the loop, not Redis, is slow
STRETCH = 4.0  # at most this many deadlines in all, however far behind the loop is
MAX_CONNECTIONS = 64  # per client (per process): Lua calls take Redis microseconds each


class RedisUnavailable(Exception):
    """Redis did not answer in time, refused the connection or failed the command."""


def connect(url: str, timeout_s: float, bounded_by_guard: bool = False) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` with the timeouts and the one retry; reads
    without a timeout of their own when every call goes through a ``RedisGuard``.

    At most ``MAX_CONNECTIONS``; a call past them waits for one to come free (bounded by the
    guard's deadline). redis-py's default pool refuses at once past 100 connections
    (``MaxConnectionsError``): 256 concurrent requests made every limited request of a
    saturated gateway a 503 for the cool-down."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    pool = BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=None,
        socket_timeout=None if bounded_by_guard else timeout_s,
        socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1))
    return Redis.from_pool(pool)


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
            return await self._in_time(asyncio.ensure_future(command()))
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = self._clock() + self.cooldown_s
            log.warning("Redis failed (%r); calls answer unavailable for %.1f s", exc,
                        self.cooldown_s)
            raise RedisUnavailable(f"Redis is unavailable: {type(exc).__name__}") from exc

    async def _in_time(self, call: asyncio.Future[T]) -> T:
        """``call``'s result by the deadline, stretched while the loop itself is behind."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        due = started + self.deadline_s
        try:
            while True:
                await asyncio.wait((call,), timeout=max(0.0, due - loop.time()))
                if call.done():
                    return call.result()
                behind = loop.time() - due  # how late this wake-up came
                if behind < LOOP_BEHIND_S or loop.time() - started >= STRETCH * self.deadline_s:
                    raise TimeoutError(f"no answer from Redis in {loop.time() - started:.1f} s")
                due = loop.time() + 2 * behind
        finally:
            call.cancel()  # no-op once done; otherwise the caller left or time is up
