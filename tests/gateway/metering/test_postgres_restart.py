"""PostgreSQL stopped and started again under load, for real (a cluster of the test's own,
``tests/gateway/outages.py``). Clients with a virtual key keep sending while the database
goes away and comes back. Every answer is a 200 or a 503 ``metering_unavailable`` with
``Retry-After`` (never a 500); a 503 was refused before dispatch (the engine generated
exactly the tokens the ledger bills); every 200 is billed once, with its own usage, those
that ended during the outage too, once the database is back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from engine.fake import FakeEngine
from gateway.metering import backlog
from gateway.metering.tables import LedgerRow
from gateway.settings import MeteringSettings
from tests.conftest import MODEL, make_settings
from tests.gateway.metered import bearer, create_key, metered_client, metering_of
from tests.gateway.outages import private_postgres

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
CLIENTS = 8


async def _load(client: httpx.AsyncClient, headers: dict[str, str], stop: asyncio.Event,
                answers: list[httpx.Response]) -> None:
    while not stop.is_set():
        answers.append(await client.post("/v1/chat/completions", json=BODY, headers=headers))
        if answers[-1].status_code == 503:
            await asyncio.sleep(0.05)


async def _rows(state: Any) -> dict[str, LedgerRow]:
    async with async_sessionmaker(metering_of(state).database)() as session:
        return {row.id: row for row in (await session.scalars(select(LedgerRow))).all()}


@pytest.mark.slow
async def test_postgres_restarted_under_load_then_refused_before_dispatch_and_all_billed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backlog, "BACKOFF_S", (0.1, 0.2, 0.5))
    engine = FakeEngine(MODEL, token_delay_s=0.01)
    with private_postgres() as postgres:
        settings = make_settings(metering=MeteringSettings(
            database_url=postgres.url, instance_id="pg-restart", pool_timeout_s=0.5))
        async with metered_client(engine, settings) as (client, state):
            key = await create_key(client, "acme", rpm=100_000)
            stop, answers = asyncio.Event(), list[httpx.Response]()
            load = [asyncio.create_task(_load(client, bearer(key), stop, answers))
                    for _ in range(CLIENTS)]
            await asyncio.sleep(1.0)
            served_before = len(answers)
            await asyncio.to_thread(postgres.stop)
            await asyncio.sleep(1.5)
            down_from = len(answers)
            waiting = len(metering_of(state).accounting.backlog)  # ended during the outage
            await asyncio.to_thread(postgres.start)
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*load)
            deadline = time.monotonic() + 20
            while len(metering_of(state).accounting.backlog):
                assert time.monotonic() < deadline, "settlements never reached the ledger"
                await asyncio.sleep(0.1)
            rows = await _rows(state)
    codes = {r.status_code for r in answers}
    refused = [r for r in answers if r.status_code == 503]
    ok = [r for r in answers if r.status_code == 200]
    assert codes <= {200, 503}, [r.text for r in answers if r.status_code not in (200, 503)]
    assert served_before > 0 and refused and waiting, (served_before, len(refused), waiting)
    assert any(r.status_code == 200 for r in answers[down_from:])  # served after the restart
    assert all(r.json()["error"]["code"] == "metering_unavailable"
               and int(r.headers["retry-after"]) >= 1 for r in refused)
    for response in ok:  # each answer billed once, with its own counts
        row = rows[response.headers["x-request-id"]]
        usage = response.json()["usage"]
        assert row.settled_at is not None and not row.recovered, row.id
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage["prompt_tokens"], usage["completion_tokens"])
    assert not [rows[r.headers["x-request-id"]].completion_tokens for r in refused
                if r.headers["x-request-id"] in rows and
                rows[r.headers["x-request-id"]].completion_tokens]
    print(f"{len(ok)} served, {len(refused)} refused, {waiting} settled after the outage")
    billed = sum(row.completion_tokens for row in rows.values())
    assert billed == engine.stats().generation_tokens_total  # nothing ran unbilled
