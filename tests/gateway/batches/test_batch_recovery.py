"""A gateway killed (SIGKILL) in the middle of a batch: after a restart under the same
instance id, or when another instance (a new id) takes over once the dead one's leases
lapse, the batch finishes, no line is answered twice and no answer is billed twice (an
attempt cut short pays only the tokens it got, on its own row)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
from sqlalchemy import select

from gateway.batches.tables import RUNNING, BatchLineRow
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


async def _billed_rows(database_url: str, batch_id: str) -> list[Any]:
    database = create_database_engine(database_url)
    try:
        async with database.connect() as connection:
            return list((await connection.execute(
                select(LedgerRow).where(LedgerRow.batch_id == batch_id))).all())
    finally:
        await database.dispose()


async def _running_lines(database_url: str, batch_id: str, owner: str) -> int:
    database = create_database_engine(database_url)
    try:
        async with database.connect() as connection:
            return len((await connection.execute(select(BatchLineRow.line).where(
                BatchLineRow.batch_id == batch_id, BatchLineRow.status == RUNNING,
                BatchLineRow.owner == owner))).all())
    finally:
        await database.dispose()


def _billed_once_per_line(rows: list[Any], lines: int) -> list[Any]:
    """Each line's answer is billed once; an attempt cut short (its lease lost on a loaded
    machine) pays exactly its own tokens, and one lost in the crash nothing."""
    billed = [row for row in rows if row.cost_pico > 0 and row.status in ("ok", "length")]
    per_line = sorted(row.id.rsplit("-", 1)[0] for row in billed)
    assert len(per_line) == lines and len(set(per_line)) == lines  # one billed answer each
    for row in rows:
        if row.status not in ("ok", "length"):
            assert (row.cost_pico > 0) == (row.completion_tokens > 0), row.id
    return billed


async def test_batch_when_its_gateway_dies_then_one_with_a_new_instance_id_finishes_it(
    database_url: str, tmp_path: Path,
) -> None:
    # a 1 s lease can lapse on a loaded machine too: attempts enough not to fail a line
    lease = {**FAST_POLL, "LLMGW_BATCHES__LEASE_S": "1", "LLMGW_BATCHES__MAX_ATTEMPTS": "20"}
    process, base = start_fake_gateway(database_url, tmp_path / "a.log", 0.1,
                                       {**lease, "LLMGW_METERING__INSTANCE_ID": "gateway-a"})
    try:
        async with httpx.AsyncClient(base_url=base) as admin:
            key = await create_key(admin, "acme")
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0)
        upload = await client.files.create(file=input_file(MODEL, 40, max_tokens=20),
                                           purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")
        await wait_completed(client, batch.id, 1)
        for _ in range(100):  # lines of the next round claimed (each takes 2 s)
            if await _running_lines(database_url, batch.id, "gateway-a"):
                break
            await asyncio.sleep(0.05)
    finally:
        process.kill()  # gateway-a never comes back: its lines stay claimed by it
        process.wait()
    process, base = start_fake_gateway(database_url, tmp_path / "b.log", 0.02,
                                       {**lease, "LLMGW_METERING__INSTANCE_ID": "gateway-b"})
    try:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0)
        done = await wait_for(client, batch.id, TERMINAL, timeout_s=60)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (40, 40)
        lines = await output_lines(client, done.output_file_id)
        assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}"
                                                                    for i in range(40))
    finally:
        process.terminate()
        process.wait()
    rows = await _billed_rows(database_url, batch.id)
    billed = _billed_once_per_line(rows, 40)
    assert any(not row.id.endswith("-1") for row in billed)  # lines gateway-a had claimed
    assert {row.instance_id for row in billed} == {"gateway-a", "gateway-b"}


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
    rows = await _billed_rows(database_url, batch.id)
    _billed_once_per_line(rows, 40)
    interrupted = [row for row in rows if row.recovered]
    assert all(row.cost_pico == 0 and row.status == "error" for row in interrupted)
