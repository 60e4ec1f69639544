"""Slow and greedy clients on a real socket: a stream nobody reads and a stream past its
deadline both end, abort the engine request and settle the ledger row."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
from sqlalchemy import select

from engine.fake import FakeEngine
from gateway.http.state import GatewayState
from gateway.metering.tables import LedgerRow
from gateway.settings import LimitSettings
from tests.conftest import MODEL
from tests.gateway.metered import create_key, metered_settings, metering_of, served
from tests.gateway.upstream.test_relay import settled_row

LONG = "word " * 40_000  # 200,000 tokens: far more than socket buffers hold as SSE chunks


def limits(**changes: float) -> LimitSettings:
    return LimitSettings(max_tokens_cap=250_000, **changes)  # type: ignore[arg-type]


async def test_stream_when_client_stops_reading_then_cut_off_aborted_and_settled(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply=LONG, max_model_len=300_000)
    settings = metered_settings(database_url, limits=limits(send_timeout_s=1.0))
    async with served(engine, settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as admin:
            key = await create_key(admin, "acme")
        host, port = server.base_url.removeprefix("http://").split(":")
        body = json.dumps({"model": MODEL, "stream": True, "max_tokens": 200_000,
                           "messages": [{"role": "user", "content": "talk"}]}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
                f"authorization: Bearer {key['key']}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection((host, int(port))) as sock:  # a client that never reads
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(head + body)
            request_id = await _first_request_id(server.state)
            row = await settled_row(server.state, request_id)
        assert row.status == "aborted"
        assert 0 < row.completion_tokens < 200_000
        assert engine.aborted == [request_id]


async def _first_request_id(state: GatewayState) -> str:
    """The id of the one ledger row this gateway wrote (the request has no response yet)."""
    for _ in range(200):
        async with metering_of(state).database.connect() as connection:
            ids = (await connection.execute(select(LedgerRow.id))).scalars().all()
        if ids:
            return str(ids[0])
        await asyncio.sleep(0.05)
    raise AssertionError("no ledger row appeared")


async def test_stream_when_past_its_deadline_then_ends_in_band_and_settles(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply=LONG, token_delay_s=0.002, max_model_len=300_000)
    settings = metered_settings(database_url, limits=limits(stream_deadline_s=0.5))
    async with served(engine, settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            key = await create_key(client, "acme")
            response = await client.post(
                "/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                json={"model": MODEL, "stream": True, "max_tokens": 200_000,
                      "messages": [{"role": "user", "content": "talk"}]})
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "ran longer than" in json.loads(events[-2])["error"]["message"]
        row = await settled_row(server.state, response.headers["x-request-id"])
        assert row.status in ("aborted", "error") and 0 < row.completion_tokens < 200_000
