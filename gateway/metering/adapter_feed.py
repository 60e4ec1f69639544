"""Adapter registrations, announced: every gateway serves what the database holds, soon.

An adapter registered or deleted through one gateway is in the shared database at once; the
others learn of it here. ``changed`` (the admin routes call it after the database commit)
publishes on ``CHANNEL`` where Redis is configured; each gateway's follower re-reads the
database's adapters on every message, whenever it (re)subscribes, and every ``interval_s``
in any case (so a gateway that could not hear Redis, or runs without it, is at most that
late). Reading is one small query; what did not change is left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.limits.redis_guard import RedisGuard, RedisUnavailable, connect

log = logging.getLogger("llm_gateway.adapters")
CHANNEL = "llmgw:adapters:changed"
RETRY_S = 1.0

Sync = Callable[[], Awaitable[None]]


class AdapterFeed:
    def __init__(self, redis_url: str | None, timeout_s: float = 1.0,
                 interval_s: float = 30.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._redis: Any = connect(redis_url, timeout_s) if redis_url else None
        self._guard = RedisGuard(timeout_s)
        self._interval_s = interval_s
        self._follower: asyncio.Task[None] | None = None

    async def changed(self) -> None:
        """Tell the other gateways (this one changed its own catalog already)."""
        if self._redis is None:
            return
        try:
            await self._guard.call(lambda: self._redis.publish(CHANNEL, b"1"))
        except RedisUnavailable as exc:
            log.warning("could not announce an adapter change through Redis (%s); other "
                        "gateways read it within %.0f s", exc, self._interval_s)

    async def start(self, sync: Sync) -> None:
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(sync), name="adapter-feed")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self._redis is not None:
            await self._redis.aclose()

    async def _follow(self, sync: Sync) -> None:
        while True:
            try:
                if self._redis is None:
                    await asyncio.sleep(self._interval_s)
                    await sync()
                else:
                    await self._listen(sync)
            except Exception as exc:  # the database or Redis away: try again shortly
                log.debug("adapter feed: %r; again in %.0f s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _listen(self, sync: Sync) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            await sync()  # anything announced before we listened
            while True:  # a message, or the interval with none: read the database again
                await pubsub.get_message(timeout=self._interval_s)
                await sync()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
