"""Adapter registrations reach every gateway on the database without a restart: announced
through Redis (gateway/metering/adapter_feed.py), and read again periodically where Redis
is absent or was not heard."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx

from engine.fake import FakeEngine
from gateway.metering.adapter_feed import AdapterFeed
from gateway.settings import Settings
from tests.conftest import MODEL
from tests.gateway.adapters.test_adapter_registry import (
    ADAPTER,
    REPLY,
    Gateway,
    adapter_folder,
    chat,
    registration,
)
from tests.gateway.metered import ADMIN, metered_settings

REDIS = "redis://127.0.0.1:6379/0"


def settings_for(database_url: str) -> Settings:
    settings = metered_settings(database_url, redis_url=REDIS)
    model = dataclasses.replace(settings.models[MODEL], max_loras=2, max_lora_rank=8)
    return settings.model_copy(update={"models": {**settings.models, MODEL: model}})


async def _until(check_status: int, client: httpx.AsyncClient, timeout_s: float = 10) -> None:
    """Until the adapter's chat answers ``check_status`` on ``client`` (an AssertionError
    past the timeout)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status = (await client.post("/v1/chat/completions", json=chat(ADAPTER),
                                    headers=ADMIN)).status_code
        if status == check_status:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {status} after {timeout_s} s, not {check_status}")
        await asyncio.sleep(0.05)


async def test_adapter_when_registered_on_one_gateway_then_the_other_serves_it_at_once(
    database_url: str, tmp_path: Path,
) -> None:
    settings = settings_for(database_url)
    engine_b = FakeEngine(MODEL, reply=REPLY)
    async with Gateway(settings, FakeEngine(MODEL)) as a, Gateway(settings, engine_b) as b:
        assert (await b.post("/v1/chat/completions", json=chat(ADAPTER),
                             headers=ADMIN)).status_code == 404
        created = await a.post("/admin/adapters", headers=ADMIN,
                               json=registration(adapter_folder(tmp_path)))
        assert created.status_code == 201, created.text
        await _until(200, b)  # the Redis message, well before the periodic read
        assert ADAPTER in engine_b.adapters_used
        assert (await a.delete(f"/admin/adapters/{ADAPTER}", headers=ADMIN)).status_code == 200
        await _until(404, b)


async def test_feed_when_no_redis_then_it_reads_again_every_interval() -> None:
    synced = asyncio.Event()
    calls = 0

    async def sync() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            synced.set()

    feed = AdapterFeed(None, interval_s=0.05)
    await feed.start(sync)
    try:
        await asyncio.wait_for(synced.wait(), 5)
    finally:
        await feed.stop()
    assert calls >= 2


async def test_feed_when_redis_unreachable_then_changed_does_not_raise() -> None:
    feed = AdapterFeed("redis://127.0.0.1:1/0", timeout_s=0.2)
    try:
        await feed.changed()  # logged; the others read it within their interval
    finally:
        await feed.stop()
