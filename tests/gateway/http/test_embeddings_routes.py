"""/v1/embeddings around fake engines (a chat model beside an embedding model), with the
official SDK, metered on SQLite and PostgreSQL. The real engine: tests/e2e/test_embeddings.py."""

from __future__ import annotations

import base64
import contextlib
import struct
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.metering.pricing import to_pico
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import PriceSettings, PricingSettings, Settings
from tests.conftest import MODEL
from tests.gateway.metered import (
    bearer,
    create_key,
    metered_settings,
    metering_of,
    on_loopback,
)

EMBEDDER = "embedder"
PRICE = PriceSettings(prompt=Decimal("0.02"))


def settings(database_url: str) -> Settings:
    return metered_settings(database_url).model_copy(
        update={"prices": PricingSettings(models={EMBEDDER: PRICE})})


def registry(context: int = 64) -> ModelRegistry:
    chat = ServedModel(MODEL, FakeEngine(MODEL), CharRenderer())
    embedder = ServedModel(EMBEDDER, FakeEngine(EMBEDDER, embedding_size=8,
                                                max_model_len=context),
                           CharRenderer(), task="embed", embedding_dimensions=(4,))
    return ModelRegistry([chat, embedder])


@contextlib.asynccontextmanager
async def gateway(database_url: str) -> AsyncIterator[tuple[str, Any, dict[str, Any]]]:
    state = build_state(settings(database_url), registry(), metered=True)
    async with on_loopback(create_app(state, manage_engines=False)) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as admin:
            key = await create_key(admin, "acme")
        yield base_url, state, key


def sdk(base_url: str, key: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key["key"], max_retries=0)


async def test_embeddings_when_sdk_sends_strings_then_unit_vectors_and_exact_usage(
    database_url: str,
) -> None:
    async with gateway(database_url) as (base_url, state, key):
        reply = await sdk(base_url, key).embeddings.create(model=EMBEDDER,
                                                           input=["hello", "hi"])
        assert [d.index for d in reply.data] == [0, 1]
        assert all(len(d.embedding) == 8 for d in reply.data)
        assert abs(sum(v * v for v in reply.data[0].embedding) - 1) < 1e-6
        assert reply.usage.prompt_tokens == len("hello") + len("hi") == reply.usage.total_tokens
        async with httpx.AsyncClient(base_url=base_url) as raw:
            response = await raw.post("/v1/embeddings", headers=bearer(key),
                                      json={"model": EMBEDDER, "input": "hello"})
        row = await metering_of(state).ledger.row(response.headers["x-request-id"])
        assert row is not None and (row.prompt_tokens, row.completion_tokens) == (5, 0)
        assert row.cost_pico == to_pico(Decimal("0.02") * 5 / 10**6)
        assert Decimal(response.headers["x-request-cost"]) == Decimal("0.02") * 5 / 10**6


async def test_embeddings_when_base64_then_the_float32_bytes_of_the_float_answer(
    database_url: str,
) -> None:
    async with gateway(database_url) as (base_url, _state, key):
        async with httpx.AsyncClient(base_url=base_url, headers=bearer(key)) as client:
            floats = (await client.post("/v1/embeddings", json={
                "model": EMBEDDER, "input": "hello"})).json()["data"][0]["embedding"]
            packed = (await client.post("/v1/embeddings", json={
                "model": EMBEDDER, "input": "hello", "encoding_format": "base64"})).json()
        raw = base64.b64decode(packed["data"][0]["embedding"])
        assert struct.unpack(f"<{len(floats)}f", raw) == pytest.approx(floats, rel=1e-6)


async def test_embeddings_when_token_ids_or_a_matryoshka_size_then_honoured(
    database_url: str,
) -> None:
    async with gateway(database_url) as (base_url, _state, key):
        client = sdk(base_url, key)
        by_ids = await client.embeddings.create(model=EMBEDDER, input=[[104, 105], [104]])
        assert by_ids.usage.prompt_tokens == 3
        short = await client.embeddings.create(model=EMBEDDER, input="hi", dimensions=4)
        assert len(short.data[0].embedding) == 4


@pytest.mark.parametrize(("body", "param"), [
    ({"model": EMBEDDER, "input": "hi", "dimensions": 3}, "dimensions"),
    ({"model": EMBEDDER, "input": "x" * 65}, "input"),
    ({"model": EMBEDDER, "input": ["ok", "x" * 65]}, "input.1"),
    ({"model": EMBEDDER, "input": ""}, "input"),
    ({"model": EMBEDDER, "input": [1_114_112]}, "input"),
    ({"model": MODEL, "input": "hi"}, "model"),
    ({"model": EMBEDDER, "input": "hi", "encoding_format": "int8"}, "encoding_format"),
])
async def test_embeddings_when_request_is_wrong_then_400_naming_the_field(
    database_url: str, body: dict[str, Any], param: str,
) -> None:
    async with gateway(database_url) as (base_url, _state, key):
        async with httpx.AsyncClient(base_url=base_url, headers=bearer(key)) as client:
            response = await client.post("/v1/embeddings", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


async def test_chat_when_model_is_an_embedder_then_400_naming_model(database_url: str) -> None:
    async with gateway(database_url) as (base_url, _state, key):
        async with httpx.AsyncClient(base_url=base_url, headers=bearer(key)) as client:
            response = await client.post("/v1/chat/completions", json={
                "model": EMBEDDER, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 400 and response.json()["error"]["param"] == "model"


async def test_models_when_listed_then_chat_and_embedding_models_both_appear(
    database_url: str,
) -> None:
    async with gateway(database_url) as (base_url, _state, key):
        ids = [m.id async for m in sdk(base_url, key).models.list()]
        assert set(ids) == {MODEL, EMBEDDER}
