"""Fallbacks: another model answers, before the first token, when the asked one cannot;
each attempt is billed as the model that answered (fake engines, metered)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.errors import (
    BudgetExceededError,
    ContextLengthError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamRejectedError,
)
from gateway.metering.tables import LedgerRow
from gateway.serving.fallbacks import Fallbacks, worth_another_model
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import ModelSettings, PriceSettings, PricingSettings
from tests.gateway.metered import bearer, create_key, metered_settings, metering_of

PRIMARY, SPARE = "primary", "spare"
ASK = {"model": PRIMARY, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@contextlib.asynccontextmanager
async def gateway(database_url: str, primary: FakeEngine
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, Any, dict[str, Any]]]:
    spare = FakeEngine(SPARE, reply="Spare here.")
    registry = ModelRegistry([ServedModel(PRIMARY, primary, CharRenderer()),
                              ServedModel(SPARE, spare, CharRenderer())])
    base = metered_settings(database_url)
    settings = base.model_copy(update={
        "models": {PRIMARY: ModelSettings(fallbacks=[SPARE]), SPARE: ModelSettings()},
        "prices": PricingSettings(models={PRIMARY: PriceSettings(completion=Decimal("1")),
                                          SPARE: PriceSettings(completion=Decimal("3"))})})
    state = build_state(settings, registry, metered=True)
    await metering_of(state).start()
    app = create_app(state, manage_engines=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway") as client:
            yield client, state, await create_key(client, "acme")
    finally:
        await metering_of(state).stop()


async def rows(state: Any) -> list[Any]:
    async with metering_of(state).database.connect() as connection:
        return list((await connection.execute(select(LedgerRow))).all())


async def test_fallback_when_the_model_has_no_ready_engine_then_the_spare_answers_and_bills(
    database_url: str,
) -> None:
    async with gateway(database_url, FakeEngine(PRIMARY, ready=False)) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=ASK, headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == SPARE
        assert body["choices"][0]["message"]["content"] == "Spare here."[:8]
        [row] = await rows(state)  # the primary refused before any ticket
        assert row.model == SPARE and row.cost_pico > 0


async def test_fallback_when_the_engine_fails_before_the_first_token_then_streamed_by_spare(
    database_url: str,
) -> None:
    primary = FakeEngine(PRIMARY, fail_after_tokens=0)
    async with gateway(database_url, primary) as (client, state, key):
        response = await client.post("/v1/chat/completions", json={**ASK, "stream": True},
                                     headers=bearer(key))
        chunks = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: {")]
        assert {c["model"] for c in chunks} == {SPARE}
        billed = {row.model: (row.status, row.cost_pico) for row in await rows(state)}
        assert billed[PRIMARY] == ("error", 0) and billed[SPARE][1] > 0


async def test_fallback_when_the_prompt_exceeds_the_context_then_a_larger_model_answers(
    database_url: str,
) -> None:
    async with gateway(database_url, FakeEngine(PRIMARY, max_model_len=16)) as (
            client, _state, key):
        response = await client.post("/v1/chat/completions", json={
            **ASK, "messages": [{"role": "user", "content": "a long question " * 3}]},
            headers=bearer(key))
        assert response.status_code == 200 and response.json()["model"] == SPARE


async def test_fallback_when_the_request_itself_is_wrong_then_no_other_model_is_tried(
    database_url: str,
) -> None:
    async with gateway(database_url, FakeEngine(PRIMARY)) as (client, state, key):
        response = await client.post("/v1/chat/completions", json={**ASK, "top_p": 0},
                                     headers=bearer(key))
        assert response.status_code == 400
        assert await rows(state) == []


def test_worth_another_model_when_the_model_fails_not_when_the_caller_does() -> None:
    assert worth_another_model(ServiceUnavailableError("down"))
    assert worth_another_model(ContextLengthError("too long"))
    assert worth_another_model(UpstreamRejectedError(429, "slow down"))
    assert not worth_another_model(UpstreamRejectedError(400, "bad"))
    assert not worth_another_model(BudgetExceededError("spent"))
    assert not worth_another_model(InvalidRequestError("bad"))
    assert Fallbacks({PRIMARY: (SPARE,)}).chain(PRIMARY) == (PRIMARY, SPARE)
