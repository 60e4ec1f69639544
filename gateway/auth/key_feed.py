"""Changes to keys and tenants, announced: this process's key cache, and every gateway's.

``KeyChanges.changed`` (called by the key and tenant stores after a change commits) clears
this process's ``KeyCache`` and, where Redis is configured, publishes on ``CHANNEL``; each
gateway's listener clears its own cache on every message. The listener also clears the
cache whenever it (re)subscribes, so what was announced while it could not hear is
forgotten too. If Redis is down, a change elsewhere reaches this gateway when its entries
expire: the cache's TTL is the worst case, never more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.auth.key_cache import KeyCache
from gateway.limits.redis_guard import RedisGuard, RedisUnavailable, connect

log = logging.getLogger("llm_gateway.auth")
CHANNEL = "llmgw:keys:changed"
RESUBSCRIBE_S = 1.0


async def announce(redis: Any, guard: RedisGuard) -> None:
    """Tell every gateway listening on ``redis`` that a key or a tenant changed."""
    try:
        await guard.call(lambda: redis.publish(CHANNEL, b"1"))
    except RedisUnavailable as exc:  # the change stands; others see it within their TTL
        log.warning("could not announce a key change through Redis (%s); other gateways "
                    "apply it when their cached keys expire", exc)


class KeyChanges:
    def __init__(self, cache: KeyCache, redis_url: str | None = None,
                 timeout_s: float = 1.0) -> None:
        self.cache = cache
        self._redis: Any = connect(redis_url, timeout_s) if redis_url else None
        self._guard = RedisGuard(timeout_s)
        self._listener: asyncio.Task[None] | None = None

    async def changed(self) -> None:
        self.cache.invalidate()
        if self._redis is not None:
            await announce(self._redis, self._guard)

    async def start(self) -> None:
        if self._redis is not None and self.cache.ttl_s > 0 and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="key-changes")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()

    async def _listen(self) -> None:
        while True:
            try:
                await self._follow()
            except Exception as exc:  # Redis gone: forget, wait, subscribe again
                self.cache.invalidate()
                log.debug("key change feed lost (%s); resubscribing", exc)
                await asyncio.sleep(RESUBSCRIBE_S)

    async def _follow(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            self.cache.invalidate()  # anything announced before we listened
            while True:
                message = await pubsub.get_message(timeout=RESUBSCRIBE_S)
                if message is not None:
                    self.cache.invalidate()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
