"""The shipped think adapter on the real engine (the session gateway, LoRA on): registered for
one tenant with vLLM's olmo3 parser and a price, it is used by name through the OpenAI SDK;
its answer's ``<think>`` span comes back as reasoning_content (the same whole and streamed),
its reasoning tokens are exactly the engine's tokens up to the one closing the span (read
from the answer's own logprobs), the ledger row names the adapter and costs its price; for
another tenant the adapter does not exist."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import select

from engine.lora.shipped import shipped_adapter
from gateway.metering.database import create_database_engine
from gateway.metering.pricing import to_pico
from gateway.metering.tables import LedgerRow
from tests.conftest import LiveGateway

ADAPTER = "smollm2-135m-think"
QUESTION = "What is 12 + 30?"
PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
PRICE = {"prompt": "1.5", "completion": "6"}

pytestmark = [pytest.mark.engine, pytest.mark.slow]


async def _ledger_row(gateway: LiveGateway, request_id: str) -> Any:
    engine = create_database_engine(gateway.env["LLMGW_METERING__DATABASE_URL"])
    try:
        async with engine.connect() as connection:
            return (await connection.execute(
                select(LedgerRow).where(LedgerRow.id == request_id))).one()
    finally:
        await engine.dispose()


def _sdk(gateway: LiveGateway, key: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key["key"], timeout=300, max_retries=0)


def _span_tokens(logprobs: list[Any]) -> int:
    """Tokens of the answer up to and including the one that completes ``</think>``."""
    text = ""
    for count, entry in enumerate(logprobs, start=1):
        text += entry.token
        if "</think>" in text:
            return count
    return len(logprobs)


@pytest.fixture(scope="module")
def keys(live_gateway: LiveGateway) -> tuple[dict[str, Any], dict[str, Any]]:
    admin = live_gateway.admin_headers()
    with httpx.Client(base_url=live_gateway.base_url, timeout=60) as client:
        mine = client.post("/admin/keys", headers=admin, json={"tenant": "lora-a"}).json()
        other = client.post("/admin/keys", headers=admin, json={"tenant": "lora-b"}).json()
        created = client.post("/admin/adapters", headers=admin, json={
            "name": ADAPTER, "base_model": live_gateway.model, "tenants": ["lora-a"],
            "path": str(shipped_adapter(ADAPTER)), "price": PRICE,
            "reasoning_parser": "olmo3"})
        assert created.status_code == 201, created.text
    return mine, other


async def test_think_adapter_when_used_by_name_then_reasoning_split_counted_and_priced(
    live_gateway: LiveGateway, keys: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    client = _sdk(live_gateway, keys[0])
    listed = {m.id: m for m in client.models.list().data}
    assert (listed[ADAPTER].model_extra or {}).get("parent") == live_gateway.model
    raw = client.chat.completions.with_raw_response.create(
        model=ADAPTER, messages=PROMPT, temperature=0, max_tokens=96, logprobs=True)
    answer = raw.parse()
    message = answer.choices[0].message
    reasoning = (message.model_extra or {})["reasoning_content"]
    assert reasoning and "42" in reasoning, answer
    assert message.content and "<think>" not in message.content and "42" in message.content
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    usage = answer.usage
    assert usage is not None and usage.completion_tokens_details is not None
    reasoning_tokens = usage.completion_tokens_details.reasoning_tokens
    assert reasoning_tokens == _span_tokens(logprobs.content)
    streamed = client.chat.completions.create(model=ADAPTER, messages=PROMPT, temperature=0,
                                              max_tokens=96, stream=True)
    parts = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
             for c in streamed if c.choices]
    assert "".join(parts) == reasoning
    response = client.responses.create(model=ADAPTER, input=QUESTION, temperature=0,
                                       max_output_tokens=96)
    item = next(o for o in response.output if o.type == "reasoning")
    assert "".join(c.text for c in item.content or []) == reasoning  # Responses, whole
    assert response.output_text == message.content
    row = await _ledger_row(live_gateway, raw.headers["x-request-id"])
    cost = (usage.prompt_tokens * Decimal(PRICE["prompt"])
            + usage.completion_tokens * Decimal(PRICE["completion"])).scaleb(-6)
    assert (row.adapter, row.model, row.cost_pico, row.reasoning_tokens) == (
        ADAPTER, ADAPTER, to_pico(cost), reasoning_tokens)


def test_think_adapter_when_another_tenant_asks_then_it_does_not_exist(
    live_gateway: LiveGateway, keys: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    client = _sdk(live_gateway, keys[1])
    assert ADAPTER not in {m.id for m in client.models.list().data}
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model=ADAPTER, messages=PROMPT, max_tokens=8)
    assert refused.value.code == "model_not_found"
