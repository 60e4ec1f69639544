"""A gateway and its vLLM engine killed (SIGKILL) in the middle of a batch: after the
restart the batch completes on the real engine, each line answered and billed once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from gateway.metering.database import create_database_engine
from gateway.metering.tables import LedgerRow
from tests.conftest import CHAT_ONLY, MODEL, LiveGateway, start_gateway, stop_gateway
from tests.gateway.batches.helpers import (
    TERMINAL,
    input_file,
    output_lines,
    wait_completed,
    wait_for,
)

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.own_engine]
LINES = 24


def _key(gateway: LiveGateway) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers=gateway.admin_headers(),
                          json={"tenant": "batch-restart"})
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


async def _billed_rows(database_url: str, batch_id: str) -> list[LedgerRow]:
    database = create_database_engine(database_url)
    try:
        async with database.connect() as connection:
            rows = (await connection.execute(
                select(LedgerRow).where(LedgerRow.batch_id == batch_id))).all()
    finally:
        await database.dispose()
    # answers: an attempt cut short (a stall on a loaded machine) pays its own tokens too
    return [row for row in rows  # type: ignore[misc]
            if row.cost_pico > 0 and row.status in ("ok", "length")]


async def test_batch_when_gateway_and_engine_killed_then_restart_finishes_it_billing_once(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    env = {"LLMGW_METERING__DATABASE_URL": database_url,
           "LLMGW_BATCHES__POLL_INTERVAL_S": "0.2", **CHAT_ONLY}
    gateway = start_gateway(tmp_path / "first.log", env)
    try:
        key = _key(gateway)
        client = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
        upload = await client.files.create(file=input_file(MODEL, LINES, max_tokens=32),
                                           purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        await wait_completed(client, batch.id, 3, timeout_s=300)
    finally:
        os.killpg(gateway.process.pid, signal.SIGKILL)  # gateway and engine: a crash
        gateway.process.wait()
    gateway = start_gateway(tmp_path / "second.log", env)
    try:
        client = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
        done = await wait_for(client, batch.id, TERMINAL, timeout_s=600)
        assert done.status == "completed" and done.request_counts is not None
        assert done.request_counts.completed == LINES
        lines = await output_lines(client, done.output_file_id)
        assert sorted(line["custom_id"] for line in lines) == sorted(
            f"req-{i}" for i in range(LINES))
    finally:
        stop_gateway(gateway)
    billed = await _billed_rows(database_url, batch.id)
    answered = [row.id.rsplit("-", 1)[0] for row in billed]
    assert len(answered) == LINES and len(set(answered)) == LINES
