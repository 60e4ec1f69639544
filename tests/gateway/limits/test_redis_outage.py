"""The limiter's Redis stopped or blackholed, for real: a Redis of the test's own is killed
and started again, and a TCP black hole (accepts, never answers) stands in for a Redis
behind a dead network path. Limited requests are refused with a 503 and ``Retry-After``
within about a second, before anything is dispatched or written; requests without limits
are served; with ``redis_fail_open`` limited requests pass (and are billed)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from engine.fake import FakeEngine
from gateway.http.state import GatewayState
from gateway.metering.tables import LedgerRow
from gateway.settings import MeteringSettings, ResponseCacheSettings, Settings
from tests.conftest import MODEL, make_settings
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metering_of
from tests.gateway.outages import black_hole, private_redis

BODY = {"model": MODEL, "prompt": "Hello", "max_tokens": 4}
QUICK_S = 2.0  # "quickly": the limiter's deadline is 3 x redis_timeout_s (0.5 s)


def redis_settings(folder: Path, redis_url: str, **metering: Any) -> Settings:
    options = MeteringSettings(database_url=sqlite_url(folder), redis_url=redis_url,
                               instance_id="redis-outage", **metering)
    return make_settings(metering=options)


async def _timed(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[httpx.Response,
                                                                                float]:
    started = time.monotonic()
    response = await client.post("/v1/completions", json=BODY, headers=headers)
    return response, time.monotonic() - started


async def _ledger_ids(state: GatewayState) -> set[str]:
    async with async_sessionmaker(metering_of(state).database)() as session:
        return set((await session.scalars(select(LedgerRow.id))).all())


def _refused_by_limiter(response: httpx.Response) -> bool:
    return (response.status_code == 503 and int(response.headers["retry-after"]) >= 1
            and response.json()["error"]["code"] == "limiter_unavailable")


async def test_limited_request_when_redis_stopped_then_503_quickly_and_served_when_back(
    tmp_path: Path,
) -> None:
    engine = FakeEngine(MODEL)
    with private_redis() as redis:
        async with metered_client(engine, redis_settings(tmp_path, redis.url)) as (client,
                                                                                    state):
            key = await create_key(client, "acme", rpm=1000)
            before, _ = await _timed(client, bearer(key))
            redis.stop()
            generated = engine.stats().generation_tokens_total
            refused, took = await _timed(client, bearer(key))
            unlimited, _ = await _timed(client, ADMIN)  # no limits: Redis is not asked
            assert engine.stats().generation_tokens_total == generated + 4  # the admin's only
            redis.start()
            await asyncio.sleep(1.1)  # the guard's cool-down after a failure
            after, _ = await _timed(client, bearer(key))
            rows = await _ledger_ids(state)
    assert before.status_code == 200 and after.status_code == 200, after.text
    assert _refused_by_limiter(refused) and took < QUICK_S, (refused.text, took)
    assert unlimited.status_code == 200
    assert refused.headers["x-request-id"] not in rows  # refused before the ledger row
    assert {before.headers["x-request-id"], after.headers["x-request-id"]} <= rows


async def test_limited_requests_when_redis_blackholed_then_503_quickly_not_hanging(
    tmp_path: Path,
) -> None:
    engine = FakeEngine(MODEL)
    async with black_hole() as port:
        settings = redis_settings(tmp_path, f"redis://127.0.0.1:{port}/0")
        async with metered_client(engine, settings) as (client, _):
            key = await create_key(client, "acme", rpm=1000)
            started = time.monotonic()
            answers = await asyncio.gather(*[_timed(client, bearer(key)) for _ in range(20)])
            wall = time.monotonic() - started
            unlimited, unlimited_took = await _timed(client, ADMIN)
    assert all(_refused_by_limiter(r) for r, _ in answers), [r.text for r, _ in answers]
    assert max(took for _, took in answers) < QUICK_S and wall < QUICK_S
    assert engine.stats().generation_tokens_total == 4  # only the admin's request ran
    assert unlimited.status_code == 200 and unlimited_took < QUICK_S


async def test_limited_request_when_redis_blackholed_and_fail_open_then_served_and_billed(
    tmp_path: Path,
) -> None:
    async with black_hole() as port:
        settings = redis_settings(tmp_path, f"redis://127.0.0.1:{port}/0",
                                  redis_fail_open=True)
        async with metered_client(FakeEngine(MODEL), settings) as (client, state):
            key = await create_key(client, "acme", rpm=1)
            answers = [await _timed(client, bearer(key)) for _ in range(3)]
            rows = await _ledger_ids(state)
    assert [r.status_code for r, _ in answers] == [200, 200, 200]  # rpm 1 not enforced
    assert all(took < QUICK_S for _, took in answers)
    assert {r.headers["x-request-id"] for r, _ in answers} <= rows


async def test_response_cache_when_its_redis_blackholed_then_a_quick_miss_not_a_failure(
    tmp_path: Path,
) -> None:
    async with black_hole() as port:
        cache = ResponseCacheSettings(backend="redis", enabled_by_default=True,
                                      redis_url=f"redis://127.0.0.1:{port}/0")
        settings = make_settings(
            metering=MeteringSettings(database_url=sqlite_url(tmp_path)), response_cache=cache)
        body = {**BODY, "temperature": 0}
        async with metered_client(FakeEngine(MODEL), settings) as (client, _):
            started = time.monotonic()
            answers = [await client.post("/v1/completions", json=body, headers=ADMIN)
                       for _ in range(5)]
            took = time.monotonic() - started
    assert [r.status_code for r in answers] == [200] * 5
    assert {r.headers.get("x-cache") for r in answers} == {"miss"}
    assert took < QUICK_S  # one timeout, then the guard answers at once while cooling down
