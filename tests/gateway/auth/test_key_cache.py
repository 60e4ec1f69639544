"""The cache of verified keys: no database round trip per request, and no stale answer past
what its settings promise (at once in this process and through Redis, else the TTL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import event
from typer.testing import CliRunner

from cli import build
from engine.fake import FakeEngine
from gateway.auth.key_cache import KeyCache
from gateway.auth.key_feed import CHANNEL
from gateway.auth.key_records import KeyRecord
from gateway.http.state import GatewayState
from gateway.settings import Settings
from tests.conftest import MODEL, make_settings
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metered_settings

REDIS = "redis://127.0.0.1:6379/0"
BODY = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
NOW = datetime(2026, 12, 7, 12, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(key_id: str = "0123456789ab", grace_until: datetime | None = None) -> KeyRecord:
    return KeyRecord(key_id, "acme", NOW, None, previous_valid_until=grace_until)


def test_key_cache_when_entry_older_than_ttl_then_miss() -> None:
    clock = Clock()
    cache = KeyCache(5, 10, clock)
    record = _record()
    cache.put("tok", record, record.principal(), cache.generation)
    clock.now += 4.9
    assert cache.get("tok", NOW) is not None
    clock.now += 0.2
    assert cache.get("tok", NOW) is None and len(cache) == 0


def test_key_cache_when_full_then_least_recently_used_goes() -> None:
    cache = KeyCache(5, 2, Clock())
    for token in ("a", "b"):
        cache.put(token, _record(), _record().principal(), cache.generation)
    assert cache.get("a", NOW) is not None  # "b" is now the least recent
    cache.put("c", _record(), _record().principal(), cache.generation)
    assert [cache.get(t, NOW) is not None for t in ("a", "b", "c")] == [True, False, True]


def test_key_cache_when_lookup_raced_an_invalidation_then_not_stored() -> None:
    cache = KeyCache(5, 10, Clock())
    seen = cache.generation  # the lookup reads the database ...
    cache.invalidate()  # ... while a change commits
    cache.put("tok", _record(), _record().principal(), seen)
    assert cache.get("tok", NOW) is None


def test_key_cache_when_rotation_grace_ends_then_miss_before_ttl() -> None:
    cache = KeyCache(60, 10, Clock())
    record = _record(grace_until=NOW + timedelta(seconds=1))
    cache.put("old", record, record.principal(), cache.generation)
    assert cache.get("old", NOW) is not None
    assert cache.get("old", NOW + timedelta(seconds=1)) is None


def test_key_cache_when_ttl_zero_then_nothing_stored() -> None:
    cache = KeyCache(0, 10, Clock())
    cache.put("tok", _record(), _record().principal(), cache.generation)
    assert cache.get("tok", NOW) is None


def _settings(database_url: str, redis_url: str | None, ttl_s: float) -> Settings:
    auth = make_settings().auth.model_copy(update={"key_cache_ttl_s": ttl_s})
    return metered_settings(database_url, redis_url, auth=auth)


@contextlib.contextmanager
def _key_queries(state: GatewayState) -> Iterator[list[str]]:
    """The SQL statements that read api_keys while the block runs."""
    assert state.metering is not None
    engine = state.metering.database.sync_engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_keys" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _status(client: httpx.AsyncClient, key: dict[str, Any]) -> int:
    return (await client.post("/v1/completions", json=BODY, headers=bearer(key))).status_code


async def test_key_when_verified_once_then_next_request_reads_no_key_row(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), _settings(database_url, None, 5)) as (
            client, state):
        key = await create_key(client, "acme")
        with _key_queries(state) as queries:
            assert await _status(client, key) == 200
            first = len(queries)
            assert await _status(client, key) == 200
        assert first >= 1 and len(queries) == first


async def test_key_when_revoked_or_tenant_changed_here_then_applies_at_once(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), _settings(database_url, None, 60)) as (
            client, _):
        key, other = await create_key(client, "acme"), await create_key(client, "acme")
        assert await _status(client, key) == 200 and await _status(client, other) == 200
        tenant = {"name": "acme", "models": ["someone-else"]}
        assert (await client.post("/admin/tenants", json=tenant, headers=ADMIN)).is_success
        assert await _status(client, other) == 403  # the tenant's models apply at once
        assert (await client.delete(f"/admin/keys/{key['id']}", headers=ADMIN)).is_success
        assert await _status(client, key) == 401


@contextlib.asynccontextmanager
async def _two_gateways(database_url: str, redis_url: str | None, ttl_s: float
                        ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    settings = _settings(database_url, redis_url, ttl_s)
    async with (metered_client(FakeEngine(MODEL), settings) as (first, _),
                metered_client(FakeEngine(MODEL), settings) as (second, _)):
        yield first, second


async def _refused_within(client: httpx.AsyncClient, key: dict[str, Any], seconds: float
                          ) -> float:
    """Seconds until ``client`` refuses ``key`` (fails past ``seconds``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while await _status(client, key) == 200:
        assert loop.time() - start < seconds, "still accepted"
        await asyncio.sleep(0.02)
    return loop.time() - start


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_key_when_revoked_on_another_gateway_with_redis_then_refused_at_once(
    database_url: str,
) -> None:
    async with _two_gateways(database_url, REDIS, 60) as (admin_side, other):
        key = await create_key(admin_side, "acme")
        await asyncio.sleep(0.3)  # the listeners have subscribed
        assert await _status(other, key) == 200  # cached there now, for 60 s
        assert (await admin_side.delete(f"/admin/keys/{key['id']}", headers=ADMIN)).is_success
        assert await _refused_within(other, key, 1.0) < 1.0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_key_when_revoked_on_another_gateway_without_redis_then_refused_within_ttl(
    database_url: str,
) -> None:
    async with _two_gateways(database_url, None, 1.0) as (admin_side, other):
        key = await create_key(admin_side, "acme")
        assert await _status(other, key) == 200
        assert (await admin_side.delete(f"/admin/keys/{key['id']}", headers=ADMIN)).is_success
        assert await _status(other, key) == 200  # the worst case: stale up to the TTL
        assert await _refused_within(other, key, 1.5) <= 1.5


def test_cli_when_it_revokes_a_key_with_redis_then_announces_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMGW_METERING__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/l.db")
    monkeypatch.setenv("LLMGW_METERING__REDIS_URL", REDIS)

    def keys(*args: str) -> str:
        result = CliRunner().invoke(build(), ["keys", *args, "--profile", "test"])
        assert result.exit_code == 0, result.output
        return result.output

    created = json.loads(keys("create", "--tenant", "acme", "--json"))
    listener = redis.Redis.from_url(REDIS).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(CHANNEL)
    try:
        while listener.get_message(timeout=0.1) is None and not listener.subscribed:
            pass  # the subscription is confirmed before anything is announced
        keys("revoke", created["id"])
        deadline = time.monotonic() + 3.0
        message = None
        while message is None and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.5)  # None also for the confirmation
        assert message is not None and message["channel"] == CHANNEL.encode()
    finally:
        listener.close()
