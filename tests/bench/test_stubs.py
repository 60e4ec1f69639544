"""The token-rate stubs (bench/stubs) as the bench runs them: processes on loopback, with a
metered gateway in front (remote mode and relay mode) whose ledger counts every token."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bench.stubs.openai_upstream import prompt_tokens
from bench.stubs.pacing import token
from bench.stubs.vllm_replica import text_chunk, usage_chunk
from engine.discovery import ReplicaSource
from engine.fake import CharRenderer
from engine.remote import ReplicaAccess
from engine.routing import ReplicaRouter, RoutingPolicy
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.metering.tables import LedgerRow
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import Settings
from tests.bench.stub_processes import REPLICA_KEY, UPSTREAM_KEY
from tests.conftest import MODEL
from tests.gateway.conftest import create_postgres_database, drop_postgres_database, postgres_url
from tests.gateway.metered import bearer, create_key, metered_settings, metering_of, on_loopback
from tests.gateway.upstream.conftest import OVERFLOW, upstream_settings

PROMPT = "Tell me about the stubs in a few words."


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL ledger (the production database)."""
    name = await create_postgres_database()
    try:
        yield postgres_url(name)
    finally:
        await drop_postgres_database(name)


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", UPSTREAM_KEY)


@contextlib.asynccontextmanager
async def gateway(settings: Settings, replica: str | None = None
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The metered gateway on loopback; MODEL served by the replica stub when given."""
    router = ReplicaRouter(MODEL, 2048, ReplicaSource((replica or "http://127.0.0.1:9",)),
                           RoutingPolicy(health_interval_s=0.2), access=ReplicaAccess(REPLICA_KEY))
    registry = ModelRegistry([ServedModel(MODEL, router, CharRenderer())])
    state = build_state(settings, registry, metered=True)
    await router.start()
    await metering_of(state).start()
    try:
        async with on_loopback(create_app(state, manage_engines=False)) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client, state
    finally:
        await metering_of(state).stop()
        await router.stop()


async def settled(state: Any, request_id: str) -> LedgerRow:
    for _ in range(200):
        row = await metering_of(state).ledger.row(request_id)
        if row is not None and row.settled_at is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"ledger row {request_id} never settled")


def streamed_text(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    payloads = [json.loads(line[6:]) for line in response.text.splitlines()
                if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads
                   if p["choices"])
    return text, payloads[-1]["usage"]


def expected_text(tokens: int) -> str:
    return "".join(token(k)[1] for k in range(tokens))


def chat(model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": stream,
                            "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


@pytest.mark.parametrize("stream", [True, False])
async def test_remote_mode_through_the_replica_stub_then_every_token_is_in_the_ledger(
    database_url: str, replica_url: str, stream: bool,
) -> None:
    async with gateway(metered_settings(database_url), replica_url) as (client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/chat/completions", json=chat(MODEL, 37, stream),
                                     headers=bearer(key))
        assert response.status_code == 200, response.text
        if stream:
            text, usage = streamed_text(response)
        else:
            text, usage = response.json()["choices"][0]["message"]["content"], \
                response.json()["usage"]
        assert text == expected_text(37)
        row = await settled(state, response.headers["x-request-id"])
        assert (row.status, row.completion_tokens, usage["completion_tokens"]) == (
            "length", 37, 37)
        assert row.prompt_tokens == usage["prompt_tokens"] > len(PROMPT)  # CharRenderer's ids
        metrics = (await client.get(f"{replica_url}/metrics")).text
        assert "vllm:generation_tokens_total" in metrics


@pytest.mark.parametrize("stream", [True, False])
async def test_relay_mode_through_the_openai_stub_then_the_ledger_has_its_usage(
    database_url: str, upstream_url: str, stream: bool,
) -> None:
    settings = upstream_settings(database_url, f"{upstream_url}/v1")
    async with gateway(settings) as (client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/chat/completions", json=chat(OVERFLOW, 29, stream),
                                     headers=bearer(key))
        assert response.status_code == 200, response.text
        if stream:
            text, usage = streamed_text(response)
        else:
            text, usage = response.json()["choices"][0]["message"]["content"], \
                response.json()["usage"]
        assert text == expected_text(29)
        row = await settled(state, response.headers["x-request-id"])
        words = prompt_tokens({"messages": [{"role": "user", "content": PROMPT}]})
        assert (row.status, row.estimated, row.completion_tokens, row.prompt_tokens) == (
            "length", False, 29, words)
        assert (usage["completion_tokens"], usage["prompt_tokens"]) == (29, words)


def test_replica_stub_refuses_a_request_without_its_key(replica_url: str) -> None:
    body = {"request_id": "r", "token_ids": [1], "sampling_params": {"max_tokens": 2},
            "stream": True, "output_mode": "text"}
    assert httpx.post(f"{replica_url}/inference/v1/generate", json=body).status_code == 401


def test_replica_stub_chunks_are_vllms_own_serialisation() -> None:
    from vllm.entrypoints.scale_out.token_in_token_out.protocol import (
        GenerateTextStreamChoice,
        GenerateTextStreamResponse,
    )
    from vllm.entrypoints.serve.engine.protocol import PromptTokenUsageInfo, UsageInfo

    for token_id, text, finish in ((1000, ' al"pha é', None), (1001, "", "length"),
                                   (None, "", "abort")):
        choice = GenerateTextStreamChoice(index=1, text=text, finish_reason=finish,
                                          token_ids=None if token_id is None else [token_id])
        chunk = GenerateTextStreamResponse(request_id="generate-tokens-r1", choices=[choice])
        own = chunk.model_dump_json(exclude={"prompt_token_ids", "mm_placeholders", "metrics"})
        assert text_chunk("generate-tokens-r1", 1, token_id, text, finish) == own
    usage = UsageInfo(prompt_tokens=7, completion_tokens=5, total_tokens=12)
    usage.prompt_tokens_details = PromptTokenUsageInfo(cached_tokens=0)
    final = GenerateTextStreamResponse(request_id="generate-tokens-r1", choices=[], usage=usage)
    assert usage_chunk("generate-tokens-r1", 7, 5) == final.model_dump_json(exclude_none=True)
