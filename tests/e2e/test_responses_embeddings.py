"""The Responses API and embeddings on the real engines (vLLM CPU: SmolLM2 and
all-MiniLM-L6-v2 served beside it by the same gateway), with the official Python SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from gateway.settings import load_settings
from tests.conftest import LiveGateway
from tests.e2e.test_chat_parity import PERSON
from tests.e2e.test_openai_sdk import sync_client

pytestmark = [pytest.mark.engine]
EMBEDDER = "all-minilm-l6-v2"
WEATHER = {"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def key_client(gateway: LiveGateway, tenant: str) -> openai.OpenAI:
    created = httpx.post(f"{gateway.base_url}/admin/keys", json={"tenant": tenant},
                         headers=gateway.admin_headers())
    assert created.status_code == 201, created.text
    return openai.OpenAI(base_url=gateway.v1, api_key=created.json()["key"], max_retries=0)


def test_responses_when_created_then_text_usage_and_cost(live_gateway: LiveGateway) -> None:
    response = sync_client(live_gateway).responses.create(
        model=live_gateway.model, input="What is the capital of France?",
        instructions="Answer in one sentence.", max_output_tokens=30, temperature=0)
    assert response.status in ("completed", "incomplete")
    assert "Paris" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    assert getattr(response.usage, "cost", None) is not None


def test_responses_stream_when_read_with_the_sdk_helper_then_deltas_equal_final_text(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)
    with client.responses.stream(model=live_gateway.model, input="Name three colors.",
                                 max_output_tokens=24, temperature=0) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed",
                                                              "response.incomplete")
    assert "response.output_text.delta" in kinds and final.output_text


def test_previous_response_id_when_chained_then_the_tenants_own_history_is_used(
    live_gateway: LiveGateway,
) -> None:
    alice, bob = key_client(live_gateway, "resp-alice"), key_client(live_gateway, "resp-bob")
    first = alice.responses.create(model=live_gateway.model, input="My name is Alice.",
                                   max_output_tokens=16, temperature=0)
    second = alice.responses.create(model=live_gateway.model, input="What is my name?",
                                    previous_response_id=first.id, max_output_tokens=16,
                                    temperature=0)
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the first turn was sent
    assert alice.responses.retrieve(first.id).output_text == first.output_text
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=live_gateway.model, input="hi",
                             previous_response_id=first.id)


def test_responses_when_text_format_is_a_json_schema_then_output_validates(
    live_gateway: LiveGateway,
) -> None:
    response = sync_client(live_gateway).responses.create(
        model=live_gateway.model, input="Invent a person.", max_output_tokens=60,
        temperature=0, text={"format": {"type": "json_schema", "name": "person",
                                        "schema": PERSON, "strict": True}})
    jsonschema.validate(json.loads(response.output_text), PERSON)


def test_responses_when_a_tool_is_required_then_a_function_call_item(
    live_gateway: LiveGateway,
) -> None:
    response = sync_client(live_gateway).responses.create(
        model=live_gateway.model, input="What is the weather in Paris?",
        tools=[WEATHER], tool_choice="required", max_output_tokens=60,  # type: ignore[list-item]
        temperature=0)
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])


def _reference(texts: list[str]) -> torch.Tensor:
    """sentence-transformers' recipe for this model: mean pooling, then L2 norm."""
    folder = str(load_settings(profile="test").model_path(EMBEDDER))
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _engine(gateway: LiveGateway, name: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/admin/engines", headers=gateway.admin_headers())
    stats: dict[str, Any] = response.json()[name]
    return stats


def test_embeddings_when_created_then_match_the_models_own_pooling_and_engine_counts(
    live_gateway: LiveGateway,
) -> None:
    texts = ["A cat sits on the mat.", "Stock markets fell sharply today."]
    before = _engine(live_gateway, EMBEDDER)["prompt_tokens_total"]
    reply = sync_client(live_gateway).embeddings.create(model=EMBEDDER, input=texts)
    after = _engine(live_gateway, EMBEDDER)["prompt_tokens_total"]
    got = torch.tensor([d.embedding for d in reply.data])
    assert got.shape == (2, 384)
    similarity = (got * _reference(texts)).sum(-1)
    assert bool((similarity > 0.999).all()), similarity
    assert reply.usage.prompt_tokens == after - before


def test_embeddings_when_input_exceeds_the_context_then_400_naming_input(
    live_gateway: LiveGateway,
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sync_client(live_gateway).embeddings.create(model=EMBEDDER, input="word " * 400)
    assert refused.value.body["param"] == "input"  # type: ignore[index]
