"""A gateway killed (SIGKILL) in the middle of a batch: after the restart the batch
finishes, no line is answered twice and no line is billed twice."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
from sqlalchemy import select

from gateway.metering.database import create_database_engine
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.batches.helpers import (
    TERMINAL,
    input_file,
    output_lines,
    wait_completed,
    wait_for,
)
from tests.gateway.fake_gateway_process import start_fake_gateway
from tests.gateway.metered import create_key

FAST_POLL = {"LLMGW_BATCHES__POLL_INTERVAL_S": "0.05"}


async def test_batch_when_gateway_killed_mid_way_then_resumed_without_redoing_or_rebilling(
    database_url: str, tmp_path: Path,
) -> None:
    process, base = start_fake_gateway(database_url, tmp_path / "first.log", 0.02, FAST_POLL)
    try:
        async with httpx.AsyncClient(base_url=base) as admin:
            key = await create_key(admin, "acme")
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0)
        upload = await client.files.create(file=input_file(MODEL, 40, max_tokens=20),
                                           purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        await wait_completed(client, batch.id, 5)
    finally:
        process.kill()  # no drain, no settlement: a crash
        process.wait()
    process, base = start_fake_gateway(database_url, tmp_path / "second.log", 0.02, FAST_POLL)
    try:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0)
        done = await wait_for(client, batch.id, TERMINAL)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (40, 40)
        lines = await output_lines(client, done.output_file_id)
        assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}"
                                                                    for i in range(40))
    finally:
        process.terminate()
        process.wait()
    database = create_database_engine(database_url)
    try:
        async with database.connect() as connection:
            rows = (await connection.execute(
                select(LedgerRow).where(LedgerRow.batch_id == batch.id))).all()
    finally:
        await database.dispose()
    billed = [row for row in rows if row.cost_pico > 0]
    per_line = sorted(row.id.rsplit("-", 1)[0] for row in billed)
    assert len(per_line) == 40 and len(set(per_line)) == 40  # one billed attempt per line
    interrupted = [row for row in rows if row.recovered]
    assert all(row.cost_pico == 0 and row.status == "error" for row in interrupted)
