"""The response cache in a metered gateway (fake engine), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx

from engine.fake import FakeEngine
from gateway.metering.pricing import to_pico
from gateway.settings import PriceSettings, PricingSettings, ResponseCacheSettings, Settings
from tests.conftest import MODEL
from tests.gateway.limits.test_limiters import REDIS
from tests.gateway.metered import (
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
    served,
)

HIT_PRICE = PriceSettings(prompt=Decimal("0.10"), completion=Decimal("0.40"),
                          cached_prompt=Decimal("0.05"), cache_hit_prompt=Decimal("0.01"),
                          cache_hit_completion=Decimal("0.02"))
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}],
        "max_tokens": 12, "temperature": 0}


def cache_settings(database_url: str, **cache: Any) -> Settings:
    base = metered_settings(database_url)
    options = {"enabled_by_default": True, **cache}
    return base.model_copy(update={
        "response_cache": ResponseCacheSettings(**options),
        "prices": PricingSettings(models={MODEL: HIT_PRICE})})


def without_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("id", "created", "usage")}


def chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


async def test_repeat_when_identical_then_hit_with_identical_body_billed_as_cached(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL)
    async with metered_client(engine, cache_settings(database_url)) as (client, state):
        key = await create_key(client, "acme")
        first = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        generated = engine.stats().generation_tokens_total
        second = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert engine.stats().generation_tokens_total == generated  # the engine did not run
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        assert without_ids(second.json()) == without_ids(first.json())
        usage = second.json()["usage"]
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        assert (prompt, completion) == (first.json()["usage"]["prompt_tokens"], 12)
        assert usage["prompt_tokens_details"]["cached_tokens"] == prompt
        hit_cost = (prompt * Decimal("0.01") + completion * Decimal("0.02")) / 10**6
        assert Decimal(second.headers["x-request-cost"]) == hit_cost
        ledger = metering_of(state).ledger
        miss_row = await ledger.row(first.headers["x-request-id"])
        hit_row = await ledger.row(second.headers["x-request-id"])
        assert miss_row is not None and hit_row is not None
        assert (miss_row.response_cached, hit_row.response_cached) == (False, True)
        assert (hit_row.prompt_tokens, hit_row.completion_tokens) == (prompt, completion)
        assert hit_row.cost_pico == to_pico(hit_cost) < miss_row.cost_pico


async def test_stream_when_hit_then_chunks_equal_the_streamed_miss(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        body = {**CHAT, "stream": True}
        miss = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        hit = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert hit.headers["x-cache"] == "hit"
        assert [without_ids(c) for c in chunks(hit.text)] == [without_ids(c)
                                                              for c in chunks(miss.text)]
        assert hit.text.rstrip().endswith("data: [DONE]")
        unstreamed = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert unstreamed.headers["x-cache"] == "hit"  # streaming does not change the key


async def test_repeat_when_any_parameter_changes_then_miss(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        variants = [{"max_tokens": 11}, {"stop": ["is"]}, {"seed": 7}, {"top_p": 0.9},
                    {"logit_bias": {"65": 5}}, {"presence_penalty": 0.5},
                    {"messages": [{"role": "user", "content": "Capital of Spain?"}]}]
        for change in variants:
            response = await client.post("/v1/chat/completions", json={**CHAT, **change},
                                         headers=bearer(key))
            assert response.headers["x-cache"] == "miss", change


async def test_request_when_sampled_without_seed_or_with_logprobs_then_bypassed(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        for body in ({**CHAT, "temperature": 0.8}, {**CHAT, "logprobs": True},
                     {**CHAT, "temperature": 0.8}, {**CHAT, "logprobs": True}):
            response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
            assert response.headers["x-cache"] == "bypass"


async def test_repeat_when_other_tenant_then_miss(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, _):
        acme, globex = await create_key(client, "acme"), await create_key(client, "globex")
        await client.post("/v1/chat/completions", json=CHAT, headers=bearer(acme))
        other = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(globex))
        assert other.headers["x-cache"] == "miss"
        second_key = await create_key(client, "acme")  # same tenant, another key: shared
        same = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(second_key))
        assert same.headers["x-cache"] == "hit"


async def test_request_when_cache_control_says_no_cache_or_no_store_then_honoured(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        no_store = {**bearer(key), "cache-control": "no-store"}
        first = await client.post("/v1/chat/completions", json=CHAT, headers=no_store)
        assert first.headers["x-cache"] == "bypass"
        fresh = {**bearer(key), "cache-control": "no-cache"}
        second = await client.post("/v1/chat/completions", json=CHAT, headers=fresh)
        assert second.headers["x-cache"] == "miss"  # nothing stored by the no-store request
        third = await client.post("/v1/chat/completions", json=CHAT, headers=fresh)
        assert third.headers["x-cache"] == "miss"  # no-cache never reads, but it refilled
        fourth = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert fourth.headers["x-cache"] == "hit"


async def test_policy_when_key_opts_out_or_in_then_it_beats_the_default(
    database_url: str,
) -> None:
    settings = cache_settings(database_url, enabled_by_default=False)
    async with metered_client(FakeEngine(MODEL), settings) as (client, _):
        default_key = await create_key(client, "acme")
        opted_in = await create_key(client, "acme", response_cache=True)
        assert opted_in["response_cache"] is True
        for _ in range(2):
            plain = await client.post("/v1/chat/completions", json=CHAT,
                                      headers=bearer(default_key))
            assert plain.headers["x-cache"] == "bypass"
        await client.post("/v1/chat/completions", json=CHAT, headers=bearer(opted_in))
        hit = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(opted_in))
        assert hit.headers["x-cache"] == "hit"
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, _):
        opted_out = await create_key(client, "acme", response_cache=False)
        for _ in range(2):
            response = await client.post("/v1/chat/completions", json=CHAT,
                                         headers=bearer(opted_out))
            assert response.headers["x-cache"] == "bypass"


async def test_stream_when_client_disconnects_then_nothing_cached(database_url: str) -> None:
    engine = FakeEngine(MODEL, reply="x" * 300, token_delay_s=0.01)
    async with served(engine, cache_settings(database_url)) as server, \
            httpx.AsyncClient(base_url=server.base_url) as client:
        key = await create_key(client, "acme")
        body = {**CHAT, "max_tokens": 200, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body,
                                 headers=bearer(key)) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {\"id\"") and "x" in line:
                    break
        await asyncio.sleep(0.5)
        again = await client.post("/v1/chat/completions", json={**body, "stream": False},
                                  headers=bearer(key))
        assert again.headers["x-cache"] == "miss"


async def test_request_when_engine_fails_then_nothing_cached(database_url: str) -> None:
    engine = FakeEngine(MODEL, fail_after_tokens=3)
    async with metered_client(engine, cache_settings(database_url)) as (client, _):
        key = await create_key(client, "acme")
        await client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                          headers=bearer(key))
        engine.fail_after_tokens = None
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.headers["x-cache"] == "miss"


async def test_redis_backend_when_two_gateways_then_one_fills_the_other_hits(
    database_url: str,
) -> None:
    settings = cache_settings(database_url, backend="redis", redis_url=REDIS)
    body = {**CHAT, "messages": [{"role": "user", "content": f"Shared {uuid.uuid4().hex}"}]}
    async with metered_client(FakeEngine(MODEL), settings) as (one, _), \
            metered_client(FakeEngine(MODEL), settings) as (two, _):
        key = await create_key(one, "acme")
        first = await one.post("/v1/chat/completions", json=body, headers=bearer(key))
        second = await two.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert without_ids(second.json()) == without_ids(first.json())


async def test_metrics_when_hits_and_misses_then_counted_by_model(database_url: str) -> None:
    async with metered_client(FakeEngine(MODEL), cache_settings(database_url)) as (client, state):
        key = await create_key(client, "acme")
        for _ in range(3):
            await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        value = state.registry.get_sample_value
        assert value("llmgw_response_cache_requests_total",
                     {"model": MODEL, "result": "hit"}) == 2
        assert value("llmgw_response_cache_requests_total",
                     {"model": MODEL, "result": "miss"}) == 1
        assert value("llmgw_response_cache_stored_total", {"model": MODEL}) == 1


async def test_repeat_when_greedy_n_is_three_then_hit_replays_all_three_choices(
    database_url: str,
) -> None:
    """Greedy n > 1 runs as three engine requests; the recording replays as one."""
    engine = FakeEngine(MODEL)
    body = {**CHAT, "n": 3, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "none"}
    async with metered_client(engine, cache_settings(database_url)) as (client, _state):
        key = await create_key(client, "acme")
        first = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        generated = engine.stats().generation_tokens_total
        second = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        streamed = await client.post("/v1/chat/completions", json={**body, "stream": True},
                                     headers=bearer(key))
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert streamed.headers["x-cache"] == "hit"
        assert engine.stats().generation_tokens_total == generated
        assert without_ids(second.json()) == without_ids(first.json())
        assert [c["index"] for c in second.json()["choices"]] == [0, 1, 2]
        texts = {i: "" for i in range(3)}
        for chunk in chunks(streamed.text):
            for choice in chunk["choices"]:
                texts[choice["index"]] += choice["delta"].get("content") or ""
        answer = first.json()["choices"][0]["message"]["content"]
        assert answer == engine.reply[:CHAT["max_tokens"]]  # type: ignore[index]
        assert texts == dict.fromkeys(range(3), answer)
