"""The ledger's connection pool exhausted, for real: the test holds the pool's only
connection. Before dispatch the request waits ``pool_timeout_s``, is retried once, then
refused with a 503 (nothing sent to the engine); a request that ends while the pool is
exhausted still returns its answer and is billed once the pool frees up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from engine.fake import FakeEngine
from gateway.metering import backlog
from gateway.metering.tables import LedgerRow
from gateway.settings import MeteringSettings, Settings
from tests.conftest import MODEL, make_settings
from tests.gateway.metered import ADMIN, metered_client, metering_of

BODY = {"model": MODEL, "prompt": "Hello", "max_tokens": 20}


def one_connection(database_url: str) -> Settings:
    return make_settings(metering=MeteringSettings(
        database_url=database_url, instance_id="pool-test", pool_size=1, pool_max_overflow=0,
        pool_timeout_s=0.2))


async def _until(condition: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_reserve_when_pool_exhausted_then_503_before_dispatch_then_served_when_free(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL)
    async with metered_client(engine, one_connection(database_url)) as (client, state):
        async with metering_of(state).database.connect() as held:  # the only connection
            await held.execute(text("SELECT 1"))
            started = time.monotonic()
            refused = await client.post("/v1/completions", json=BODY, headers=ADMIN)
            took = time.monotonic() - started
        assert engine.stats().generation_tokens_total == 0  # never dispatched
        served = await client.post("/v1/completions", json=BODY, headers=ADMIN)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "metering_unavailable"
    assert int(refused.headers["retry-after"]) >= 1
    # two pool timeouts of 0.2 s and the retry's pause (under 1 s on a quiet machine), not
    # the default pool timeout of 30 s; the bound leaves room for a loaded 2-core box
    assert took < 10.0
    assert served.status_code == 200


async def test_settle_when_pool_exhausted_as_request_ends_then_billed_once_it_frees(
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backlog, "BACKOFF_S", (0.05,))
    engine = FakeEngine(MODEL, token_delay_s=0.02)
    async with metered_client(engine, one_connection(database_url)) as (client, state):
        metering = metering_of(state)
        request = asyncio.create_task(
            client.post("/v1/completions", json=BODY, headers=ADMIN))
        await _until(lambda: engine.stats().running == 1)  # reserved, now generating
        async with metering.database.connect() as held:
            await held.execute(text("SELECT 1"))
            response = await request  # settles while the pool has no connection to give
            assert len(metering.accounting.backlog) == 1
        await _until(lambda: len(metering.accounting.backlog) == 0)
        async with async_sessionmaker(metering.database)() as session:
            rows = list((await session.scalars(select(LedgerRow))).all())
    assert response.status_code == 200
    usage = response.json()["usage"]
    [row] = rows
    assert row.id == response.headers["x-request-id"] and row.settled_at is not None
    assert not row.recovered and row.status == "length"
    assert row.completion_tokens == usage["completion_tokens"] == 20
    assert engine.stats().generation_tokens_total == 20
