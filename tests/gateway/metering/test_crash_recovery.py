"""kill -9 of a gateway process during 64 live streams: after restart the ledger holds every
request exactly once, the open ones closed by startup recovery, nothing billed twice.

The gateway is a real process (``tests.gateway.fake_gateway``: the metered app around a
fake engine, on uvicorn) with a real ledger database (SQLite file and PostgreSQL); the
engine is not what is under test, so no vLLM engine is started.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.metering.database import create_database_engine
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.fake_gateway_process import start_fake_gateway
from tests.gateway.metered import ADMIN

STREAMS = 64
COMPLETED = 8
INSTANCE = "crash-test-instance"

pytestmark = pytest.mark.slow


async def _stream(client: httpx.AsyncClient, key: str, started: asyncio.Event,
                  streaming: list[str]) -> str:
    """One stream; once every stream has its first chunk, ``started`` is set."""
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 64, "stream": True}
    async with client.stream("POST", "/v1/completions", json=body,
                             headers={"authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        try:
            async for line in response.aiter_lines():
                if line.startswith("data:") and request_id not in streaming:
                    streaming.append(request_id)
                    if len(streaming) == STREAMS:
                        started.set()
        except httpx.HTTPError:
            pass  # the gateway was killed under us
    return request_id


async def _crash_during_streams(base: str, process: subprocess.Popen[bytes],
                                key: str) -> tuple[list[str], list[str]]:
    limits = httpx.Limits(max_connections=STREAMS + 8)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        done = []
        for _ in range(COMPLETED):
            response = await client.post("/v1/completions", headers={
                "authorization": f"Bearer {key}"}, json={"model": MODEL, "prompt": "Hi",
                                                        "max_tokens": 4})
            assert response.status_code == 200
            done.append(response.headers["x-request-id"])
        started, streaming = asyncio.Event(), []
        tasks = [asyncio.create_task(_stream(client, key, started, streaming))
                 for _ in range(STREAMS)]
        await asyncio.wait_for(started.wait(), timeout=60)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        in_flight = await asyncio.gather(*tasks)
    return done, in_flight


async def _ledger(database_url: str) -> list[LedgerRow]:
    engine = create_database_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(LedgerRow))).all())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def _key(base: str) -> str:
    response = httpx.post(f"{base}/admin/keys", json={"tenant": "acme"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    token: str = response.json()["key"]
    return token


async def test_gateway_killed_during_64_streams_then_every_request_in_ledger_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    env = {"LLMGW_METERING__INSTANCE_ID": INSTANCE}
    process, base = start_fake_gateway(database_url, log, 0.5, env)
    try:
        key = _key(base)
        done, in_flight = await _crash_during_streams(base, process, key)
        assert process.returncode == -signal.SIGKILL
        before = {row.id: row for row in await _ledger(database_url)}
        assert sum(row.settled_at is None for row in before.values()) == STREAMS
    finally:
        if process.poll() is None:
            process.kill()
    restarted, base = start_fake_gateway(database_url, log, 0.0, env)
    try:
        after = await _restart_checks(base, key)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    rows = {row.id: row for row in await _ledger(database_url)}
    _assert_exactly_once(rows, done, in_flight, after, before)


async def _restart_checks(base: str, key: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.post("/v1/completions", headers={
            "authorization": f"Bearer {key}"}, json={"model": MODEL, "prompt": "Hi",
                                                    "max_tokens": 4})
        assert response.status_code == 200
        spend = await client.get("/admin/spend", headers=ADMIN)
    assert spend.json()["totals"]["requests"] == COMPLETED + STREAMS + 1
    request_id: str = response.headers["x-request-id"]
    return request_id


def _assert_exactly_once(rows: dict[str, Any], done: list[str], in_flight: list[str],
                         after: str, before: dict[str, Any]) -> None:
    assert set(rows) == {*done, *in_flight, after}
    assert len(rows) == COMPLETED + STREAMS + 1 == len({*done, *in_flight, after})
    assert all(row.settled_at is not None for row in rows.values())
    for request_id in [*done, after]:  # settled normally, untouched by recovery
        row = rows[request_id]
        assert not row.recovered and row.status in ("ok", "length")
        assert row.cost_pico > 0
        if request_id in before:
            assert row.settled_at == before[request_id].settled_at
            assert row.cost_pico == before[request_id].cost_pico
    for request_id in in_flight:  # open at the crash: closed once, at no cost
        row = rows[request_id]
        assert row.recovered and row.status == "error" and row.cost_pico == 0
        assert row.reserved_pico > 0
