"""PostgreSQL stopped and started again under load, for real (a cluster of the test's own,
``tests/gateway/outages.py``). Clients with a virtual key keep sending while the database
goes away and comes back. Every answer is a 200 or a 503 ``metering_unavailable`` with
``Retry-After`` (never a 500); a 503 was refused before dispatch (the engine generated
exactly the tokens the ledger bills); every 200 is billed once, with its own usage, those
that ended during the outage too, once the database is back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
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


def _summary(answers: list[httpx.Response]) -> str:
    codes = Counter(a.status_code for a in answers)
    return f"{dict(codes)}, the last {answers[-1].text[:200] if answers else None}"


async def _until(condition: Callable[[], bool], what: Callable[[], str],
                 timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        await asyncio.sleep(0.05)


async def _through_an_outage(client: httpx.AsyncClient, headers: dict[str, str],
                             postgres: PrivatePostgres, state: Any, engine: FakeEngine) -> Run:
    """Events, not fixed sleeps: a slow, loaded machine gets there too, only later."""
    stop, answers = asyncio.Event(), list[httpx.Response]()
    backlog_now = metering_of(state).accounting.backlog
    load = [asyncio.create_task(_load(client, headers, stop, answers)) for _ in range(CLIENTS)]
    await _until(lambda: sum(a.status_code == 200 for a in answers) >= CLIENTS
                 and engine.stats().running > 0,  # and some caught mid-generation
                 lambda: f"answers before the outage: {_summary(answers)}")
    served_before = len(answers)
    await asyncio.to_thread(postgres.stop)
    waiting = 0

    def outage_seen() -> bool:  # a request that ended meanwhile queued, a new one refused
        nonlocal waiting
        waiting = max(waiting, len(backlog_now))
        return waiting > 0 and any(a.status_code == 503 for a in answers[served_before:])

    await _until(outage_seen, lambda: (
        f"a queued settlement and a refusal: {waiting} queued, "
        f"{_summary(answers[served_before:])}"))
    down_from = len(answers)
    await asyncio.to_thread(postgres.start)
    await _until(lambda: any(a.status_code == 200 for a in answers[down_from:]),
                 lambda: (
        f"a 200 once the database is back: {_summary(answers[down_from:])}"))
    stop.set()
    await asyncio.gather(*load)
    await _until(lambda: not len(backlog_now),
                 lambda: f"the ledger: {len(backlog_now)} settlements still queued")
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
            run = await _through_an_outage(client, bearer(key), postgres, state, engine)
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
