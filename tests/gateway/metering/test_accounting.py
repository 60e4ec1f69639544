"""Metered requests on a fake engine, on SQLite and PostgreSQL: cost, ledger, limits."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx

from engine.fake import FakeEngine
from gateway.metering.pricing import to_pico
from tests.conftest import MODEL
from tests.gateway.metered import (
    ADMIN,
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
    served,
)

PROMPT_PRICE, COMPLETION_PRICE = Decimal("0.10"), Decimal("0.40")  # configs/prices.yaml


def cost(prompt: int, completion: int) -> Decimal:
    return (prompt * PROMPT_PRICE + completion * COMPLETION_PRICE) / 1_000_000


def completion_body(prompt: str = "Hello", max_tokens: int = 8,
                    **extra: object) -> dict[str, object]:
    return {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, **extra}


async def test_completion_when_metered_then_cost_in_usage_header_and_ledger(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/completions", json=completion_body(), headers=bearer(key))
        assert response.status_code == 200, response.text
        expected = cost(5, 8)  # "Hello": 5 tokens; the reply is cut at max_tokens=8
        assert response.json()["usage"]["cost"] == float(expected)
        assert Decimal(response.headers["x-request-cost"]) == expected
        assert response.headers["x-request-cost"] == "0.0000037"
        row = await metering_of(state).ledger.row(response.headers["x-request-id"])
        assert row is not None
        assert (row.key_id, row.tenant, row.model, row.status) == (key["id"], "acme", MODEL,
                                                                   "length")
        assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (5, 0, 8)
        assert row.cost_pico == to_pico(expected)
        assert row.reserved_tokens == 5 + 8 and row.settled_at is not None


async def test_stream_when_finished_then_final_usage_chunk_carries_cost(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        chunks = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: {")]
        usage = chunks[-1]["usage"]
        prompt = len("user: Hi\nassistant: ")
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, 4)
        assert Decimal(str(usage["cost"])) == cost(prompt, 4)


async def test_chat_when_n_is_two_then_prompt_billed_once_and_both_choices_billed(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, state):
        key = await create_key(client, "acme")
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 3, "n": 2, "temperature": 0.7}
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        prompt = len("user: Hi\nassistant: ")
        assert response.json()["usage"]["completion_tokens"] == 6
        row = await metering_of(state).ledger.row(response.headers["x-request-id"])
        assert row is not None and (row.n, row.prompt_tokens, row.completion_tokens) == (
            2, prompt, 6)
        assert row.cost_pico == to_pico(cost(prompt, 6))


async def test_stream_when_client_disconnects_then_billed_exactly_what_engine_generated(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply="x" * 400, token_delay_s=0.01)
    async with served(engine, metered_settings(database_url)) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            key = await create_key(client, "acme")
            body = completion_body(max_tokens=300, stream=True)
            async with client.stream("POST", "/v1/completions", json=body,
                                     headers=bearer(key)) as response:
                request_id = response.headers["x-request-id"]
                seen = 0
                async for line in response.aiter_lines():
                    seen += line.startswith("data: {")
                    if seen == 20:
                        break
        ledger = metering_of(server.state).ledger
        for _ in range(200):
            row = await ledger.row(request_id)
            if row is not None and row.settled_at is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None and row.status == "aborted"
        assert engine.aborted == [request_id]
        generated = engine.stats().generation_tokens_total
        assert 20 <= row.completion_tokens == generated < 300
        assert row.cost_pico == to_pico(cost(5, generated))


async def test_request_when_engine_fails_before_first_token_then_nothing_billed(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, fail_after_tokens=0)
    async with metered_client(engine, metered_settings(database_url)) as (client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/completions", json=completion_body(), headers=bearer(key))
        assert response.status_code == 503
        row = await metering_of(state).ledger.row(response.headers["x-request-id"])
        assert row is not None and row.status == "error"
        assert (row.prompt_tokens, row.completion_tokens, row.cost_pico) == (0, 0, 0)


async def test_requests_when_64_race_for_a_budget_that_fits_10_then_exactly_10_pass(
    database_url: str,
) -> None:
    worst = cost(2, 8)  # prompt "Hi", max_tokens 8: the reply always fills all 8 tokens
    engine = FakeEngine(MODEL, token_delay_s=0.005)
    async with metered_client(engine, metered_settings(database_url)) as (client, state):
        key = await create_key(client, "acme", budget_usd=str(worst * 10))
        responses = await asyncio.gather(*[
            client.post("/v1/completions", json=completion_body("Hi"), headers=bearer(key))
            for _ in range(64)])
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 10 + [429] * 54
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error"]["code"] == "insufficient_quota"
        assert int(refused.headers["retry-after"]) >= 1
        spend = await client.get("/admin/spend", params={"key": key["id"]}, headers=ADMIN)
        totals = spend.json()["totals"]
        assert totals["requests"] == 10
        assert Decimal(totals["cost_usd"]) == worst * 10
        del state


async def test_requests_when_rpm_exceeded_then_429_with_retry_after(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        key = await create_key(client, "acme", rpm=2)
        codes = [(await client.post("/v1/completions", json=completion_body(),
                                    headers=bearer(key))) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        error = codes[2].json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert 1 <= int(codes[2].headers["retry-after"]) <= 60


async def test_request_when_worst_case_exceeds_tpm_then_429_says_lower_max_tokens(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (client, _):
        key = await create_key(client, "acme", tpm=100)
        response = await client.post("/v1/completions", json=completion_body(max_tokens=500),
                                     headers=bearer(key))
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "tokens_exceed_limit"
        ok = await client.post("/v1/completions", json=completion_body(max_tokens=50),
                               headers=bearer(key))
        assert ok.status_code == 200
