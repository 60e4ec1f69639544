"""Ledger vs engine on the real vLLM engine: 300+ mixed requests, token sums equal exactly.

Streamed and not (no usage chunk asked), n=2 (greedy too), stop strings, tool calls and
json_schema answers, clients hanging up mid-stream, 429s and 400s: the
ledger's prompt tokens (x n: vLLM counts the prompt once per choice) and completion tokens
must equal the growth of vLLM's own prompt/generation counters, and every row's cost must
be its tokens x price exactly.
"""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.metering.database import create_database_engine
from gateway.metering.pricing import Price, to_pico
from gateway.metering.tables import LedgerRow
from gateway.serving.tally import Usage
from tests.conftest import LiveGateway

PRICE = Price(Decimal("0.10"), Decimal("0.40"), Decimal("0.05"))  # configs/prices.yaml
TOPICS = ["France", "the sea", "a cat", "winter", "bread", "Mars", "music", "a river"]
TOOL = {"type": "function", "function": {"name": "look_up", "parameters": {
    "type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}}}


def _request(i: int, rng: random.Random, model: str) -> tuple[str, dict[str, Any], str]:
    """(path, body, kind) for request ``i``: a deterministic mix of every case."""
    topic = rng.choice(TOPICS)
    chat = {"model": model, "messages": [{"role": "user", "content": f"Tell me about {topic}."}],
            "max_tokens": rng.randint(3, 12), "temperature": 0.8, "seed": i}
    kind = ["plain", "stream", "n2", "stop", "abort", "completion", "n2stream", "abort",
            "tools", "schema", "greedy_n2"][i % 11]
    if kind == "stream":  # no usage chunk asked for: billing does not depend on it
        chat["stream"] = True
    elif kind == "tools":
        chat.update(stream=True, tools=[TOOL], tool_choice="required", max_tokens=24)
    elif kind == "schema":
        chat.update(max_tokens=24, response_format={"type": "json_schema", "json_schema": {
            "name": "note", "schema": {"type": "object", "properties": {
                "note": {"type": "string"}}, "required": ["note"]}}})
    elif kind == "greedy_n2":  # two engine requests (vLLM refuses greedy n > 1)
        chat.update(n=2, temperature=0)
    elif kind == "n2":
        chat["n"] = 2
    elif kind == "n2stream":
        chat.update(n=2, stream=True)
    elif kind == "stop":
        chat["stop"] = [" ", "e"]
    elif kind == "abort":
        chat.update(stream=True, max_tokens=64)
    elif kind == "completion":
        body = {"model": model, "prompt": f"A short note on {topic}:", "max_tokens": 6,
                "temperature": 0.8, "seed": i}
        return "/v1/completions", body, kind
    return "/v1/chat/completions", chat, kind


async def _send(client: httpx.AsyncClient, path: str, body: dict[str, Any], kind: str,
                headers: dict[str, str]) -> int:
    if kind != "abort":
        response = await client.post(path, json=body, headers=headers)
        return response.status_code
    async with client.stream("POST", path, json=body, headers=headers) as response:
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: {")
            if seen >= 3:  # hang up mid-stream
                break
        return response.status_code


def _idle_stats(gateway: LiveGateway) -> dict[str, Any]:
    """Engine counters once nothing runs and they stopped moving."""
    last: dict[str, Any] | None = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stats = gateway.engine_stats()
        quiet = stats["unfinished_requests"] == 0
        if quiet and last is not None and (stats["prompt_tokens_total"],
                                           stats["generation_tokens_total"]) == (
                last["prompt_tokens_total"], last["generation_tokens_total"]):
            return stats
        last = stats
        time.sleep(1.0)
    raise AssertionError(f"engine not idle: {last}")


async def _ledger_rows(gateway: LiveGateway, tenants: tuple[str, ...]) -> list[LedgerRow]:
    engine = create_database_engine(gateway.env["LLMGW_METERING__DATABASE_URL"])
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(LedgerRow).where(LedgerRow.tenant.in_(tenants)))
            return list(result.all())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


@pytest.mark.engine
@pytest.mark.slow
async def test_ledger_when_300_mixed_requests_then_token_sums_equal_engine_counters(
    live_gateway: LiveGateway,
) -> None:
    admin = live_gateway.admin_headers()
    async with httpx.AsyncClient(base_url=live_gateway.base_url, timeout=300) as client:
        rich = (await client.post("/admin/keys", headers=admin,
                                  json={"tenant": "recon"})).json()
        poor = (await client.post("/admin/keys", headers=admin,
                                  json={"tenant": "recon-poor", "budget_usd": "0.0000001"})).json()
        before = _idle_stats(live_gateway)
        rng = random.Random(7)
        gate = asyncio.Semaphore(16)
        plan = [_request(i, rng, live_gateway.model) for i in range(320)]

        async def one(i: int) -> int:
            path, body, kind = plan[i]
            key = poor if i % 40 == 39 else rich  # 8 requests on a key whose budget fits none
            if i % 50 == 49:
                body = {**body, "max_tokens": 100_000}  # 400: beyond the context
            async with gate:
                return await _send(client, path, body, kind,
                                   {"authorization": f"Bearer {key['key']}"})

        codes = await asyncio.gather(*[one(i) for i in range(len(plan))])
    assert codes.count(429) >= 6 and codes.count(400) >= 6
    assert set(codes) <= {200, 400, 429}
    after = _idle_stats(live_gateway)
    for _ in range(60):  # settlements of hung-up streams may finish after the engine
        rows = await _ledger_rows(live_gateway, ("recon", "recon-poor"))
        if all(row.settled_at is not None for row in rows):
            break
        await asyncio.sleep(0.5)
    assert len(rows) == codes.count(200)
    assert all(row.settled_at is not None for row in rows)
    statuses = {row.status for row in rows}
    assert {"ok", "length", "aborted"} <= statuses
    prompt = sum(row.prompt_tokens * row.n for row in rows)
    generated = sum(row.completion_tokens for row in rows)
    assert prompt == after["prompt_tokens_total"] - before["prompt_tokens_total"]
    assert generated == after["generation_tokens_total"] - before["generation_tokens_total"]
    for row in rows:
        usage = Usage(row.prompt_tokens, row.completion_tokens, row.cached_tokens)
        assert row.cost_pico == to_pico(PRICE.cost(usage)), row.id
