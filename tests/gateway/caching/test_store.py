"""Response stores: the in-process LRU's bounds, and Redis shared between processes."""

from __future__ import annotations

import uuid

import pytest

from gateway.caching.store import MemoryStore, RedisStore
from tests.gateway.limits.test_limiters import REDIS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_memory_when_full_then_least_recently_used_evicted_and_size_bounded() -> None:
    store = MemoryStore(max_bytes=1000, max_entry_bytes=400, ttl_s=60)
    for i in range(10):
        assert await store.put(f"k{i}", bytes(300))
        assert store.size_bytes <= 1000
    assert len(store) == 3 and store.evictions == 7
    assert await store.get("k7") is not None  # now most recently used
    await store.put("k10", bytes(300))
    assert await store.get("k8") is None  # the least recently used went first
    assert await store.get("k7") is not None


async def test_memory_when_entry_larger_than_limit_then_not_stored() -> None:
    store = MemoryStore(max_bytes=1000, max_entry_bytes=100, ttl_s=60)
    assert not await store.put("big", bytes(101))
    assert await store.get("big") is None and store.size_bytes == 0


async def test_memory_when_ttl_passed_then_entry_gone_and_its_bytes_freed() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=1000, max_entry_bytes=500, ttl_s=10, clock=clock)
    await store.put("k", b"value")
    clock.now = 9.9
    assert await store.get("k") == b"value"
    clock.now = 10.0
    assert await store.get("k") is None and store.size_bytes == 0


async def test_memory_when_key_rewritten_then_counted_once() -> None:
    store = MemoryStore(max_bytes=1000, max_entry_bytes=500, ttl_s=10)
    await store.put("k", bytes(200))
    await store.put("k", bytes(300))
    assert store.size_bytes == 300 and len(store) == 1


async def test_redis_when_one_client_stores_then_another_reads_until_ttl() -> None:
    key = uuid.uuid4().hex
    writer = RedisStore(REDIS, max_entry_bytes=1000, ttl_s=0.5)
    reader = RedisStore(REDIS, max_entry_bytes=1000, ttl_s=0.5)
    try:
        assert await writer.put(key, b"answer")
        assert await reader.get(key) == b"answer"
        assert not await writer.put(key + "-big", bytes(1001))
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_redis_when_server_unreachable_then_miss_not_failure() -> None:
    store = RedisStore("redis://127.0.0.1:9/0", max_entry_bytes=1000, ttl_s=5)
    try:
        assert await store.get("k") is None
        assert not await store.put("k", b"v")
    finally:
        await store.aclose()


def test_memory_when_entry_limit_exceeds_total_then_refused() -> None:
    with pytest.raises(ValueError):
        MemoryStore(max_bytes=100, max_entry_bytes=200, ttl_s=1)
