"""Chat Completions parity on the real engine (vLLM CPU, SmolLM2) with the official Python SDK:
stream usage as OpenAI does it, tools (named, required, auto, round trip), structured
outputs, logit_bias, greedy n > 1, several prompts, all metered exactly."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from transformers import AutoTokenizer

from gateway.settings import load_settings
from tests.conftest import LiveGateway
from tests.e2e.test_openai_sdk import async_client, engine_delta, sync_client

pytestmark = [pytest.mark.engine]
WEATHER: ChatCompletionToolParam = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris?"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
HERMES_PARIS = (r'<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris"\}\}'
                r'\n</tool_call>')


def test_documentation_stream_loop_when_usage_not_asked_then_runs_clean(
    live_gateway: LiveGateway,
) -> None:
    """OpenAI's own example reads chunk.choices[0] on every chunk (no IndexError)."""
    text = ""
    stream = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model, stream=True, temperature=0, max_tokens=20,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    for chunk in stream:
        assert chunk.usage is None
        text += chunk.choices[0].delta.content or ""
    assert "Paris" in text


def test_stream_when_include_usage_then_one_final_usage_chunk_equal_to_engine_counts(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)

    def run() -> list[Any]:
        return list(client.chat.completions.create(
            model=live_gateway.model, messages=ASK, stream=True, temperature=0, max_tokens=16,
            stream_options={"include_usage": True}))

    chunks, prompt_delta, generation_delta = engine_delta(live_gateway, run)
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and chunks[-1].choices == []
    assert with_usage[0].usage.completion_tokens == generation_delta
    assert with_usage[0].usage.prompt_tokens == prompt_delta


def _arguments(call: Any) -> dict[str, Any]:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[typeddict-item]
    assert isinstance(arguments, dict)
    return arguments


def test_named_tool_choice_when_asked_then_arguments_match_the_schema_and_usage_is_exact(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)
    named = {"type": "function", "function": {"name": "get_weather"}}
    reply, _, generated = engine_delta(live_gateway, lambda: client.chat.completions.create(
        model=live_gateway.model, messages=ASK, tools=[WEATHER], tool_choice=named,
        temperature=0, max_tokens=40))
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert _arguments(call)["city"]
    assert reply.choices[0].finish_reason == "stop"  # as OpenAI, for a named choice
    assert reply.usage.completion_tokens == generated


async def test_required_tool_choice_when_streamed_then_pieces_assemble_to_valid_calls(
    live_gateway: LiveGateway,
) -> None:
    client = async_client(live_gateway)
    stream = await client.chat.completions.create(
        model=live_gateway.model, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=60, stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        for piece in delta.tool_calls or []:
            entry = calls.setdefault(piece.index, {"name": "", "arguments": ""})
            entry["name"] += piece.function.name or "" if piece.function else ""
            entry["arguments"] += (piece.function.arguments or "") if piece.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER["function"]["parameters"])  # type: ignore[typeddict-item]


def test_tool_result_when_sent_back_then_the_conversation_continues(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)
    first = client.chat.completions.create(
        model=live_gateway.model, messages=ASK, tools=[WEATHER], tool_choice="required",
        temperature=0, max_tokens=60)
    call = first.choices[0].message.tool_calls[0]
    history: list[ChatCompletionMessageParam] = [
        *ASK, first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"}]
    second = client.chat.completions.create(
        model=live_gateway.model, messages=history, tools=[WEATHER], temperature=0,
        max_tokens=30)
    assert second.choices[0].message.content
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    # the tool's own text is in the prompt: a longer result makes a longer prompt (a template
    # that dropped tool messages, or kept only the call, would count the same)
    longer = [*history[:-1], {**history[-1], "content": "22 degrees and sunny, with a light "
                              "breeze from the west and no rain until the evening"}]
    third = client.chat.completions.create(
        model=live_gateway.model, messages=longer, tools=[WEATHER], temperature=0,
        max_tokens=1)
    assert third.usage.prompt_tokens > second.usage.prompt_tokens


def test_auto_when_model_writes_the_hermes_format_then_vllms_parser_reads_the_call(
    live_gateway: LiveGateway,
) -> None:
    """SmolLM2 is too small to call tools on its own: vLLM's structured_outputs extension
    forces the Hermes text, which the model's configured parser (hermes) must read."""
    reply = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model, messages=ASK, tools=[WEATHER], temperature=0,
        max_tokens=60, extra_body={"structured_outputs": {"regex": HERMES_PARIS}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.function.name, _arguments(c)) for c in choice.message.tool_calls] == [
        ("get_weather", {"city": "Paris"})]


def test_json_schema_when_strict_then_answer_validates(live_gateway: LiveGateway) -> None:
    reply = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model, temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), PERSON)


def test_json_object_when_asked_for_a_short_object_then_answer_parses(
    live_gateway: LiveGateway,
) -> None:
    reply = sync_client(live_gateway).chat.completions.create(
        model=live_gateway.model, temperature=0, max_tokens=80,
        messages=[{"role": "user", "content": "Give a JSON object with one key: color."}],
        response_format={"type": "json_object"})
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_schema_when_the_grammar_backend_cannot_compile_it_then_400_names_response_format(
    live_gateway: LiveGateway,
) -> None:
    bad = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        sync_client(live_gateway).chat.completions.create(
            model=live_gateway.model, messages=ASK, max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad}})
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]


def test_greedy_n_when_vllm_refuses_it_then_gateway_answers_n_identical_choices(
    live_gateway: LiveGateway,
) -> None:
    """vLLM refuses n > 1 at temperature 0; OpenAI answers it. Each copy runs on the engine,
    so usage is still exactly what the engine generated."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError):
        SamplingParams(n=2, temperature=0.0)
    client = sync_client(live_gateway)
    reply, _, generated = engine_delta(live_gateway, lambda: client.chat.completions.create(
        model=live_gateway.model, messages=ASK, n=2, temperature=0, max_tokens=12))
    texts = [c.message.content for c in reply.choices]
    assert len(texts) == 2 and texts[0] == texts[1] and texts[0]
    assert reply.usage.completion_tokens == generated


def test_logit_bias_when_the_greedy_first_token_is_banned_then_another_is_chosen(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)
    prompt = "The capital of France is"
    first = client.completions.create(model=live_gateway.model, prompt=prompt, max_tokens=1,
                                      temperature=0)
    tokenizer = AutoTokenizer.from_pretrained(
        str(load_settings(profile="test").model_path(live_gateway.model)))
    [banned] = tokenizer.encode(first.choices[0].text, add_special_tokens=False)
    second = client.completions.create(model=live_gateway.model, prompt=prompt, max_tokens=1,
                                       temperature=0, logit_bias={str(banned): -100})
    assert second.choices[0].text != first.choices[0].text


def test_completions_when_several_prompts_then_one_choice_each_and_exact_usage(
    live_gateway: LiveGateway,
) -> None:
    client = sync_client(live_gateway)
    reply, prompt_delta, generated = engine_delta(
        live_gateway, lambda: client.completions.create(
            model=live_gateway.model, prompt=["The sky is", "Water is made of"],
            max_tokens=8, temperature=0))
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.text for c in reply.choices)
    assert reply.usage.prompt_tokens == prompt_delta
    assert reply.usage.completion_tokens == generated
