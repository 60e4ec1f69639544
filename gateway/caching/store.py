"""Where recordings live: an in-process LRU (bounded by bytes and age) or Redis.

The cache must never fail a request, nor hold one up: a store that errors or does not
answer within ``redis_timeout_s`` behaves as a miss (a put as not stored), the failure is
logged, and for a moment after it Redis is not asked at all (``RedisGuard``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from gateway.limits.redis_guard import RedisGuard, RedisUnavailable, connect

log = logging.getLogger("llm_gateway.caching")


class ResponseStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> bool:
        """Store ``value``; False when it was not stored (too large, store down)."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """Least recently used entries go first once ``max_bytes`` is reached."""

    def __init__(self, max_bytes: int, max_entry_bytes: int, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entry_bytes > max_bytes or ttl_s <= 0:
            raise ValueError("max_entry_bytes must fit in max_bytes; ttl_s must be > 0")
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.size_bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.size_bytes -= len(value)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def put(self, key: str, value: bytes) -> bool:
        if len(value) > self.max_entry_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        while self._entries and self.size_bytes + len(value) > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.evictions += 1
        self._entries[key] = (self._clock() + self._ttl, value)
        self.size_bytes += len(value)
        return True

    async def aclose(self) -> None:
        self._entries.clear()
        self.size_bytes = 0


class RedisStore:
    """Shared by every gateway replica; Redis expires entries (and evicts, per its policy)."""

    PREFIX = "llmgw:response:"

    def __init__(self, url: str, max_entry_bytes: int, ttl_s: float,
                 timeout_s: float = 0.25) -> None:
        self._redis: Any = connect(url, timeout_s)
        self._guard = RedisGuard(timeout_s)
        self.max_entry_bytes = max_entry_bytes
        self._ttl_ms = int(ttl_s * 1000)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._guard.call(lambda: self._redis.get(self.PREFIX + key))
        except RedisUnavailable as exc:  # the cache never fails a request
            log.warning("response cache: get missed, %s", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes) -> bool:
        if len(value) > self.max_entry_bytes:
            return False
        try:
            await self._guard.call(
                lambda: self._redis.set(self.PREFIX + key, value, px=self._ttl_ms))
        except RedisUnavailable as exc:
            log.warning("response cache: not stored, %s", exc)
            return False
        return True

    async def aclose(self) -> None:
        await self._redis.aclose()
