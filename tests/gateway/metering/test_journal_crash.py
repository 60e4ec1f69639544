"""kill -9 of a gateway process while settlements wait for a ledger database that is down:
the restart on the same data directory, with the database back, bills every one of them from
the settlement journal, once, with its own tokens, before startup recovery could close its
row at no cost. The ledger then equals the engine's token counters.

Real parts: the gateway is its own process (``tests.gateway.fake_gateway``: the metered app
around a fake engine, on uvicorn), the ledger a PostgreSQL cluster of the test's own
(``tests/gateway/outages.py``) stopped and started for real; the engine's counters are read
from the gateway's /metrics before the kill.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gateway.metering.database import create_database_engine
from gateway.metering.journal import SettlementJournal, journal_path
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.fake_gateway_process import start_fake_gateway
from tests.gateway.metered import ADMIN
from tests.gateway.outages import private_postgres

pytestmark = pytest.mark.slow

INSTANCE = "journal-crash-instance"
BEFORE = 3  # answered and billed while the database is up
QUEUED = 6  # running when the database goes away: answered, their settlements queued
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}


async def _metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """Sample name -> value (summed over labels) from /metrics."""
    text = (await client.get("/metrics", headers=ADMIN)).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def _until(condition: Callable[[], Awaitable[bool]], what: str,
                 timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _chat(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=BODY, headers=ADMIN)


async def _outage_then_kill(base: str, process: subprocess.Popen[bytes], stop_database:
                            Callable[[], None]) -> tuple[list[httpx.Response], dict[str, float]]:
    """Requests answered before and during the outage; the engine's counters at the kill."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        answered = [await _chat(client) for _ in range(BEFORE)]
        running = [asyncio.create_task(_chat(client)) for _ in range(QUEUED)]

        async def all_running() -> bool:
            return (await _metrics(client)).get("llmgw_engine_running", 0) == QUEUED

        await _until(all_running, f"{QUEUED} requests running on the engine")
        await asyncio.to_thread(stop_database)
        answered += await asyncio.gather(*running)

        async def all_queued() -> bool:
            return (await _metrics(client)).get("llmgw_ledger_settlements_pending") == QUEUED

        await _until(all_queued, f"{QUEUED} settlements queued for the ledger")
        refused = await _chat(client)  # a new request meets the outage before dispatch
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "metering_unavailable"
        counters = await _metrics(client)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return answered, counters


async def _ledger(database_url: str) -> dict[str, LedgerRow]:
    engine = create_database_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(LedgerRow))).all()
    finally:
        await engine.dispose()
    return {row.id: row for row in rows}  # type: ignore[misc]


async def test_gateway_killed_with_settlements_queued_in_an_outage_then_restart_bills_them_once(
    tmp_path: Path, own_data_dir: Path,
) -> None:
    env = {"LLMGW_METERING__INSTANCE_ID": INSTANCE, "LLMGW_DATA_DIR": str(own_data_dir),
           "LLMGW_METERING__POOL_TIMEOUT_S": "0.5"}
    journal = SettlementJournal(journal_path(own_data_dir, INSTANCE))
    log = tmp_path / "gateway.log"
    with private_postgres() as postgres:
        process, base = start_fake_gateway(postgres.url, log, 0.05, env)
        try:
            answered, engine = await _outage_then_kill(base, process, postgres.stop)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == -signal.SIGKILL
        assert len(journal.read()) == QUEUED  # on disk: the process is gone
        postgres.start()
        restarted, base = start_fake_gateway(postgres.url, log, 0.0, env)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                counted = await _metrics(client)
        finally:
            restarted.terminate()
            restarted.wait(timeout=30)
        rows = await _ledger(postgres.url)
    assert all(r.status_code == 200 for r in answered), [r.text for r in answered]
    assert set(rows) == {r.headers["x-request-id"] for r in answered}  # the 503: no row
    for response in answered:  # each billed once, with its own tokens, none recovered
        row, usage = rows[response.headers["x-request-id"]], response.json()["usage"]
        assert row.settled_at is not None and not row.recovered and row.status == "length"
        assert (row.prompt_tokens, row.completion_tokens) == (usage["prompt_tokens"],
                                                               usage["completion_tokens"])
        assert row.cost_pico > 0
    assert sum(r.completion_tokens for r in rows.values()) == engine[
        "llmgw_engine_generation_tokens_total"]
    assert sum(r.prompt_tokens for r in rows.values()) == engine[
        "llmgw_engine_prompt_tokens_total"]
    assert not journal.path.exists()  # drained and compacted at the restart
    replayed = [rows[r.headers["x-request-id"]] for r in answered[BEFORE:]]
    assert counted["llmgw_billed_tokens_total"] == sum(  # the restart counts what it settled
        r.prompt_tokens + r.completion_tokens for r in replayed) > 0
