"""Models relayed to an external OpenAI-compatible upstream (a real server on loopback),
metered on SQLite and PostgreSQL: the upstream's usage when it sends one, else tiktoken."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx

from engine.fake import FakeEngine
from gateway.metering.pricing import to_pico
from gateway.metering.tables import LedgerRow
from gateway.upstream.tokens import TiktokenCounter, offline_encoding
from tests.conftest import MODEL
from tests.gateway.metered import bearer, create_key, metered_client, metering_of, served
from tests.gateway.upstream.conftest import OVERFLOW, cost, upstream_settings
from tests.gateway.upstream.openai_upstream import (
    CACHED_TOKENS,
    PROMPT_TOKENS,
    UPSTREAM_KEY,
    Behaviour,
    running_upstream,
    words,
)

O200K = TiktokenCounter(offline_encoding("o200k_base"))  # gpt-4o-mini's encoding
USAGE = {"stream_options": {"include_usage": True}}
CHAT = {"model": OVERFLOW, "messages": [{"role": "user", "content": "Say hello to Paris."}],
        "max_tokens": 6}


@contextlib.asynccontextmanager
async def relayed(database_url: str, behaviour: Behaviour
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, Any, dict[str, Any]]]:
    """A metered gateway relaying OVERFLOW to a loopback upstream, and a key of tenant acme."""
    async with running_upstream(behaviour) as url, metered_client(
            FakeEngine(MODEL), upstream_settings(database_url, url)) as (client, state):
        yield client, state, await create_key(client, "acme")


def chat_estimate() -> int:
    """OpenAI's count for CHAT: 3 per message + role + content, 3 to prime the reply."""
    return 3 + O200K.count("user") + O200K.count("Say hello to Paris.") + 3


def sse_payloads(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


async def settled_row(state: Any, request_id: str) -> LedgerRow:
    ledger = metering_of(state).ledger
    for _ in range(200):
        row = await ledger.row(request_id)
        if row is not None and row.settled_at is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"ledger row {request_id} never settled")


async def test_chat_when_upstream_reports_usage_then_billed_exactly_from_it(
    database_url: str,
) -> None:
    behaviour = Behaviour()
    async with relayed(database_url, behaviour) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == OVERFLOW
        assert body["choices"][0]["message"]["content"] == "".join(words(6))
        expected = cost(PROMPT_TOKENS, 6, CACHED_TOKENS)
        assert body["usage"]["prompt_tokens"] == PROMPT_TOKENS
        assert body["usage"]["cost"] == float(expected) and "estimated" not in body["usage"]
        assert Decimal(response.headers["x-request-cost"]) == expected
        row = await settled_row(state, response.headers["x-request-id"])
        assert (row.model, row.tenant, row.status, row.estimated) == (OVERFLOW, "acme", "length",
                                                                      False)
        assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (
            PROMPT_TOKENS, CACHED_TOKENS, 6)
        assert row.cost_pico == to_pico(expected)
        sent = behaviour.seen[0]
        assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"  # ours, never the client's
        assert sent["body"]["model"] == "gpt-4o-mini" and sent["body"]["max_tokens"] == 6


async def test_stream_when_upstream_reports_usage_then_last_chunk_carries_it_with_cost(
    database_url: str,
) -> None:
    behaviour = Behaviour()
    async with relayed(database_url, behaviour) as (client, state, key):
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True, **USAGE},
                                     headers=bearer(key))
        assert response.status_code == 200, response.text
        assert response.text.rstrip().endswith("data: [DONE]")
        chunks = sse_payloads(response.text)
        text = "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"])
        assert text == "".join(words(6))
        assert all(c["model"] == OVERFLOW for c in chunks)
        usage = chunks[-1]["usage"]
        assert chunks[-1]["choices"] == []
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (PROMPT_TOKENS, 6)
        assert usage["cost"] == float(cost(PROMPT_TOKENS, 6, CACHED_TOKENS))
        assert behaviour.seen[0]["body"]["stream_options"] == {"include_usage": True}
        row = await settled_row(state, response.headers["x-request-id"])
        assert (row.completion_tokens, row.estimated) == (6, False)


async def test_stream_when_relayed_one_after_another_then_one_upstream_connection_serves_all(
    database_url: str,
) -> None:
    behaviour = Behaviour()
    async with relayed(database_url, behaviour) as (client, _state, key):
        for _ in range(4):
            response = await client.post("/v1/chat/completions",
                                         json={**CHAT, "stream": True}, headers=bearer(key))
            assert response.text.rstrip().endswith("data: [DONE]"), response.text
    assert len(behaviour.seen) == 4 and len(behaviour.peers) == 1, behaviour.peers


async def test_stream_when_upstream_sends_no_usage_then_tiktoken_counts_flagged_estimated(
    database_url: str,
) -> None:
    behaviour = Behaviour(send_usage=False)
    async with relayed(database_url, behaviour) as (client, state, key):
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True, **USAGE},
                                     headers=bearer(key))
        usage = sse_payloads(response.text)[-1]["usage"]
        completion = O200K.count("".join(words(6)))
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (chat_estimate(),
                                                                        completion)
        assert usage["estimated"] is True
        row = await settled_row(state, response.headers["x-request-id"])
        assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (
            chat_estimate(), completion, True)
        assert row.cost_pico == to_pico(cost(chat_estimate(), completion))


async def test_completion_when_upstream_sends_no_usage_then_estimate_from_text(
    database_url: str,
) -> None:
    async with relayed(database_url, Behaviour(send_usage=False)) as (client, state, key):
        body = {"model": OVERFLOW, "prompt": "Once upon a time", "max_tokens": 5, "n": 2,
                "temperature": 0.7}
        response = await client.post("/v1/completions", json=body, headers=bearer(key))
        assert response.status_code == 200, response.text
        assert [c["text"] for c in response.json()["choices"]] == ["".join(words(5))] * 2
        row = await settled_row(state, response.headers["x-request-id"])
        assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (
            O200K.count("Once upon a time"), 2 * O200K.count("".join(words(5))), True)


async def test_request_when_upstream_refuses_it_then_its_status_in_our_words_and_no_charge(
    database_url: str,
) -> None:
    """The upstream's message may name its account or limits: the client sees ours, with the
    status and the field the upstream named (an unknown code is dropped)."""
    async with relayed(database_url, Behaviour(fail_status=400)) as (client, state, key):
        for stream in (False, True):
            response = await client.post("/v1/chat/completions",
                                         json={**CHAT, "stream": stream}, headers=bearer(key))
            assert response.status_code == 400
            assert response.json()["error"] == {
                "message": "the upstream API refused the request (400): check 'messages'",
                "type": "invalid_request_error", "param": "messages", "code": None}
            row = await settled_row(state, response.headers["x-request-id"])
            assert (row.status, row.completion_tokens, row.cost_pico) == ("error", 0, 0)


async def test_request_when_upstream_rate_limits_then_429_with_its_retry_after(
    database_url: str,
) -> None:
    async with relayed(database_url, Behaviour(fail_status=429)) as (client, _, key):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status_code == 429 and response.headers["retry-after"] == "7"


async def test_request_when_upstream_rejects_the_gateways_key_then_502_not_401(
    database_url: str, monkeypatch: Any,
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "wrong-key")
    async with relayed(database_url, Behaviour()) as (client, _, key):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_error"


async def test_request_when_upstream_is_down_then_502_and_the_gateway_keeps_serving(
    database_url: str,
) -> None:
    settings = upstream_settings(database_url, "http://127.0.0.1:9/v1")  # discard port
    async with metered_client(FakeEngine(MODEL), settings) as (client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status_code == 502
        row = await settled_row(state, response.headers["x-request-id"])
        assert (row.status, row.cost_pico) == ("error", 0)
        local = await client.post("/v1/completions", headers=bearer(key),
                                  json={"model": MODEL, "prompt": "Hi", "max_tokens": 3})
        assert local.status_code == 200


async def test_stream_when_client_disconnects_then_upstream_closed_and_received_text_billed(
    database_url: str,
) -> None:
    behaviour = Behaviour(send_usage=True, token_delay_s=0.02)
    async with running_upstream(behaviour) as url, served(
            FakeEngine(MODEL), upstream_settings(database_url, url)) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            key = await create_key(client, "acme")
            body = {**CHAT, "max_tokens": 500, "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body,
                                     headers=bearer(key)) as response:
                request_id = response.headers["x-request-id"]
                seen = 0
                async for line in response.aiter_lines():
                    seen += line.startswith("data: {")
                    if seen == 10:
                        break
        await asyncio.wait_for(behaviour.disconnected.wait(), timeout=10)
        row = await settled_row(server.state, request_id)
        assert (row.status, row.estimated) == ("aborted", True)
        assert row.prompt_tokens == chat_estimate()
        assert 10 <= row.completion_tokens < 500  # each word is one o200k token
        assert row.cost_pico == to_pico(cost(chat_estimate(), row.completion_tokens))


async def test_request_when_budget_cannot_cover_worst_case_then_429_before_upstream(
    database_url: str,
) -> None:
    behaviour = Behaviour()
    async with running_upstream(behaviour) as url, metered_client(
            FakeEngine(MODEL), upstream_settings(database_url, url)) as (client, _):
        key = await create_key(client, "acme", budget_usd="0.000001")
        response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 100},
                                     headers=bearer(key))
        assert response.status_code == 429
        assert response.json()["error"]["type"] == "insufficient_quota"
        assert behaviour.seen == []


async def test_models_when_an_upstream_is_configured_then_it_is_listed(
    database_url: str,
) -> None:
    async with relayed(database_url, Behaviour()) as (client, _, key):
        listed = (await client.get("/v1/models", headers=bearer(key))).json()["data"]
        assert {m["id"]: m["owned_by"] for m in listed}[OVERFLOW] == "upstream"


async def test_chat_when_tools_and_response_format_sent_then_relayed_to_the_upstream(
    database_url: str,
) -> None:
    """An upstream that supports tools reads them itself; the gateway passes them on."""
    behaviour = Behaviour()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object"}, "strict": True}}
    body = {**CHAT, "tools": tools, "tool_choice": "auto", "response_format": schema}
    async with relayed(database_url, behaviour) as (client, _state, key):
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert response.status_code == 200, response.text
        sent = behaviour.seen[0]["body"]
        assert sent["tools"] == tools and sent["tool_choice"] == "auto"
        assert sent["response_format"] == schema  # "schema", not the model's field name


async def test_chat_when_body_has_account_or_privacy_fields_then_they_stay_here(
    database_url: str,
) -> None:
    behaviour = Behaviour()
    body = {**CHAT, "service_tier": "auto", "store": False, "user": "end-user-42",
            "top_k": 5, "temperature": 0.5}
    async with relayed(database_url, behaviour) as (client, _state, key):
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert response.status_code == 200, response.text
        sent = behaviour.seen[0]["body"]
        assert not {"service_tier", "store", "user", "top_k", "metadata"} & set(sent)
        assert sent["temperature"] == 0.5 and sent["messages"] == CHAT["messages"]


async def test_request_when_upstream_fails_twice_then_retried_and_answered(
    database_url: str,
) -> None:
    behaviour = Behaviour(fail_status=503, fail_times=2)
    async with relayed(database_url, behaviour) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status_code == 200, response.text
        assert len(behaviour.seen) == 3  # two failures, retried with backoff, then the answer
        row = await settled_row(state, response.headers["x-request-id"])
        assert row.status == "length" and row.completion_tokens == 6


async def test_upstream_when_it_keeps_failing_then_the_breaker_stops_calling_it(
    database_url: str,
) -> None:
    behaviour = Behaviour(fail_status=500)
    async with running_upstream(behaviour) as url, metered_client(
            FakeEngine(MODEL), upstream_settings(database_url, url, retries=0,
                                                 breaker_failures=2,
                                                 breaker_cooldown_s=60)) as (client, _state):
        key = await create_key(client, "acme")
        codes = [(await client.post("/v1/chat/completions", json=CHAT,
                                    headers=bearer(key))).status_code for _ in range(4)]
        assert codes == [502] * 4
        assert len(behaviour.seen) == 2  # the breaker opened after two failures


async def test_upstream_when_down_and_a_local_fallback_is_listed_then_it_answers(
    database_url: str,
) -> None:
    behaviour = Behaviour(fail_status=503)
    async with running_upstream(behaviour) as url, metered_client(
            FakeEngine(MODEL), upstream_settings(database_url, url, retries=1,
                                                 fallbacks=[MODEL])) as (client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status_code == 200 and response.json()["model"] == MODEL
        assert len(behaviour.seen) == 2  # the upstream was tried (and retried) first
        row = await metering_of(state).ledger.row(response.headers["x-request-id"] + "-fb1")
        assert row is not None and row.model == MODEL
