"""Attribution on the real engine (the session gateway): the same greedy chat, non-streamed,
streamed, answered from the response cache and run as a batch line, is kept under the same
end user and tags in the ledger, and the tenant's spend groups them into one line."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.metering.database import create_database_engine
from gateway.metering.tables import LedgerRow, LedgerTagRow
from tests.conftest import LiveGateway


async def _attribution(gateway: LiveGateway, request_ids: list[str]
                       ) -> dict[str, tuple[str | None, set[str], bool]]:
    engine = create_database_engine(gateway.env["LLMGW_METERING__DATABASE_URL"])
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(LedgerRow).where(LedgerRow.id.in_(request_ids)))).all()
            tags = (await connection.execute(select(LedgerTagRow).where(
                LedgerTagRow.request_id.in_(request_ids)))).all()
    finally:
        await engine.dispose()
    return {row.id: (row.end_user, {t.tag for t in tags if t.request_id == row.id},
                     row.response_cached) for row in rows}


async def _batch_line(client: httpx.AsyncClient, headers: dict[str, str],
                      body: dict[str, Any]) -> str:
    line = {"custom_id": "one", "method": "POST", "url": "/v1/chat/completions", "body": body}
    upload = await client.post("/v1/files", headers=headers, data={"purpose": "batch"},
                               files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")})
    assert upload.status_code == 200, upload.text
    batch = (await client.post("/v1/batches", headers=headers, json={
        "input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})).json()
    deadline = time.monotonic() + 240
    while batch["status"] not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, batch
        await asyncio.sleep(0.5)
        batch = (await client.get(f"/v1/batches/{batch['id']}", headers=headers)).json()
    assert batch["status"] == "completed", batch
    output = await client.get(f"/v1/files/{batch['output_file_id']}/content", headers=headers)
    return str(json.loads(output.text.splitlines()[0])["response"]["request_id"])


@pytest.mark.engine
@pytest.mark.slow
async def test_attribution_when_one_chat_runs_four_ways_on_the_engine_then_one_spend_line(
    live_gateway: LiveGateway,
) -> None:
    admin = live_gateway.admin_headers()
    body = {"model": live_gateway.model, "temperature": 0, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "user": "end-user-7", "metadata": {"team": "search", "env": "ci"}}
    async with httpx.AsyncClient(base_url=live_gateway.base_url, timeout=300) as client:
        key = (await client.post("/admin/keys", headers=admin,
                                 json={"tenant": "attribution", "response_cache": True})).json()
        headers = {"authorization": f"Bearer {key['key']}"}
        plain = await client.post("/v1/chat/completions", json=body, headers=headers)
        hit = await client.post("/v1/chat/completions", json=body, headers=headers)
        streamed = await client.post("/v1/chat/completions", json={**body, "stream": True},
                                     headers={**headers, "cache-control": "no-store"})
        assert [r.status_code for r in (plain, hit, streamed)] == [200, 200, 200]
        assert (plain.headers["x-cache"], hit.headers["x-cache"]) == ("miss", "hit")
        ids = [r.headers["x-request-id"] for r in (plain, hit, streamed)]
        ids.append(await _batch_line(client, headers, body))
        found = await _attribution(live_gateway, ids)
        assert {request_id: found[request_id][:2] for request_id in ids} == dict.fromkeys(
            ids, ("end-user-7", {"team:search", "env:ci"}))
        assert [found[i][2] for i in ids] == [False, True, False, False]
        spend = (await client.get("/v1/spend", params={"group_by": "user,tag"},
                                  headers=headers)).json()["data"]
        assert sorted((d["user"], d["tag"], d["requests"]) for d in spend) == [
            ("end-user-7", "env:ci", 4), ("end-user-7", "team:search", 4)]
