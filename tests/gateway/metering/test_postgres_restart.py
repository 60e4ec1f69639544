"""PostgreSQL stopped and started again under load, for real (a cluster of the test's own,
``tests/gateway/outages.py``). Clients with a virtual key keep sending while the database
goes away and comes back. Every answer is a 200 or a 503 ``metering_unavailable`` with
``Retry-After`` (never a 500); a 503 was refused before dispatch (the engine generated
exactly the tokens the ledger bills); every 200 is billed once, with its own usage, those
that ended during the outage too, once the database is back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
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
from tests.gateway.outages import PrivatePostgres, private_postgres

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


@dataclass
class Run:
    answers: list[httpx.Response]
    served_before: int  # answers before the database went away
    down_from: int  # answers before it came back
    waiting: int  # most settlements queued at once: requests that ended meanwhile


async def _through_an_outage(client: httpx.AsyncClient, headers: dict[str, str],
                             postgres: PrivatePostgres, state: Any) -> Run:
    stop, answers = asyncio.Event(), list[httpx.Response]()
    load = [asyncio.create_task(_load(client, headers, stop, answers)) for _ in range(CLIENTS)]
    await asyncio.sleep(1.0)
    served_before = len(answers)
    await asyncio.to_thread(postgres.stop)
    waiting = 0
    for _ in range(30):  # 1.5 s without the database
        await asyncio.sleep(0.05)
        waiting = max(waiting, len(metering_of(state).accounting.backlog))
    down_from = len(answers)
    await asyncio.to_thread(postgres.start)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*load)
    deadline = time.monotonic() + 20
    while len(metering_of(state).accounting.backlog):
        assert time.monotonic() < deadline, "settlements never reached the ledger"
        await asyncio.sleep(0.1)
    return Run(answers, served_before, down_from, waiting)


@pytest.mark.slow
async def test_postgres_restarted_under_load_then_refused_before_dispatch_and_all_billed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backlog, "BACKOFF_S", (0.1, 0.2, 0.5))
    engine = FakeEngine(MODEL, token_delay_s=0.05)  # 0.4 s on the engine per request
    with private_postgres() as postgres:
        settings = make_settings(metering=MeteringSettings(
            database_url=postgres.url, instance_id="pg-restart", pool_timeout_s=0.5))
        async with metered_client(engine, settings) as (client, state):
            key = await create_key(client, "acme", rpm=100_000)
            run = await _through_an_outage(client, bearer(key), postgres, state)
            rows = await _rows(state)
    refused = [r for r in run.answers if r.status_code == 503]
    assert {r.status_code for r in run.answers} <= {200, 503}, [
        r.text for r in run.answers if r.status_code not in (200, 503)]
    assert run.served_before and refused and run.waiting, (run, len(refused))
    assert any(r.status_code == 200 for r in run.answers[run.down_from:])  # back again
    assert all(r.json()["error"]["code"] == "metering_unavailable"
               and int(r.headers["retry-after"]) >= 1 for r in refused)
    for response in (r for r in run.answers if r.status_code == 200):  # each billed once
        row, usage = rows[response.headers["x-request-id"]], response.json()["usage"]
        assert row.settled_at is not None and not row.recovered, row.id
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage["prompt_tokens"], usage["completion_tokens"])
    assert not any(rows[r.headers["x-request-id"]].completion_tokens for r in refused
                   if r.headers["x-request-id"] in rows)
    billed = sum(row.completion_tokens for row in rows.values())
    assert billed == engine.stats().generation_tokens_total  # nothing ran unbilled
