"""Tool calls and structured outputs through /v1 around a fake engine that answers with the
text a constrained (or tool-calling) model would produce. The real engine's constraint is
tested in tests/e2e/test_chat_parity.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.conftest import ADMIN_KEY, MODEL, make_settings
from tests.gateway.http.test_openai_routes import assert_envelope, sse_payloads

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
HERMES = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(model_name=MODEL)


async def client_for(engine: FakeEngine, parser: str | None) -> AsyncIterator[httpx.AsyncClient]:
    registry = ModelRegistry([ServedModel(MODEL, engine, CharRenderer(), tool_parser=parser)])
    app = create_app(build_state(make_settings(), registry), manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway",
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


@pytest.fixture
async def client(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(engine, "hermes"):
        yield c


@pytest.fixture
async def client_without_parser(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(engine, None):
        yield c


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": ASK, "tools": [WEATHER, TIME], **fields}


async def streamed(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200, response.text
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def joined_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls") or []:
            entry = calls.setdefault(call["index"], {"name": "", "arguments": "", "id": ""})
            if "id" in call:
                assert not entry["id"], "a call's id and name come once"
                entry["id"], entry["name"] = call["id"], call["function"]["name"]
                assert call["type"] == "function"
            entry["arguments"] += call["function"]["arguments"]
    return calls


async def test_named_choice_when_answered_then_tool_call_with_arguments_and_stop(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = '{"city": "Paris"}'
    named = {"type": "function", "function": {"name": "get_weather"}}
    body = (await client.post("/v1/chat/completions", json=chat(tool_choice=named))).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"  # OpenAI: a named choice finishes with stop
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert body["usage"]["completion_tokens"] == len(engine.reply)


async def test_required_choice_when_streamed_then_name_then_argument_pieces_and_tool_calls(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = '[{"name": "get_weather", "parameters": {"city": "Paris"}}]'
    chunks = await streamed(client, chat(tool_choice="required"))
    calls = joined_calls(chunks)
    assert list(calls) == [0] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    pieces = [c for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert len(pieces) > 2  # arguments arrive in pieces, not at the end
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["choices"] for c in chunks)  # no usage chunk unless asked


async def test_auto_when_model_writes_hermes_call_then_parsed_into_tool_calls(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = HERMES
    body = (await client.post("/v1/chat/completions", json=chat())).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    streamed_calls = joined_calls(await streamed(client, chat()))
    assert json.loads(streamed_calls[0]["arguments"]) == {"city": "Paris"}


async def test_auto_when_model_answers_in_text_then_content_and_stop(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = (await client.post("/v1/chat/completions", json=chat(tool_choice="auto"))).json()
    assert body["choices"][0]["message"]["content"] == engine.reply
    assert "tool_calls" not in body["choices"][0]["message"]
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_auto_when_model_has_no_tool_parser_then_400_naming_tool_choice(
    client_without_parser: httpx.AsyncClient,
) -> None:
    response = await client_without_parser.post("/v1/chat/completions", json=chat())
    error = assert_envelope(response, 400, "tool_choice")
    assert "tool parser" in error["message"]


async def test_required_when_model_has_no_tool_parser_then_still_works(
    client_without_parser: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = '[{"name": "get_time", "parameters": {}}]'
    body = (await client_without_parser.post(
        "/v1/chat/completions", json=chat(tool_choice="required"))).json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"


async def test_history_when_it_holds_a_tool_call_and_its_result_then_rendered_into_prompt(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C and sunny"}]
    body = (await client.post("/v1/chat/completions", json=chat(messages=history))).json()
    rendered = ('tools: get_weather,get_time\nuser: Weather in Paris?\n'
                'assistant: get_weather({"city": "Paris"})\ntool: 22 C and sunny\nassistant: ')
    assert body["usage"]["prompt_tokens"] == len(rendered)


async def test_legacy_functions_when_called_then_function_call_message(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = '{"city": "Paris"}'
    body = {"model": MODEL, "messages": ASK, "functions": [WEATHER["function"]],
            "function_call": {"name": "get_weather"}}
    message = (await client.post("/v1/chat/completions", json=body)).json()[
        "choices"][0]["message"]
    assert message["function_call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert "tool_calls" not in message


@pytest.mark.parametrize(("body", "param"), [
    (chat(tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
    ({"model": MODEL, "messages": ASK, "tool_choice": "required"}, "tool_choice"),
    (chat(tools=[WEATHER, WEATHER]), "tools"),
    (chat(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "objekt"}}}]), "tools.0.function.parameters"),
    (chat(tool_choice="required",
          response_format={"type": "json_object"}), "response_format"),
    ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]},
     "messages.0.tool_call_id"),
    ({"model": MODEL, "messages": ASK, "chat_template_kwargs": {"tokenize": False}},
     "chat_template_kwargs"),
    ({"model": MODEL, "messages": ASK, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
     "response_format.json_schema.schema"),
    ({"model": MODEL, "messages": ASK, "response_format": {"type": "json_object"},
      "structured_outputs": {"regex": "a+"}}, "structured_outputs"),
])
async def test_tools_when_request_is_wrong_then_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    assert_envelope(await client.post("/v1/chat/completions", json=body), 400, param)


async def test_completions_when_several_prompts_then_choices_per_prompt_and_summed_usage(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = {"model": MODEL, "prompt": ["ab", "cde"], "n": 2, "max_tokens": 50,
            "temperature": 0.5}
    answer = (await client.post("/v1/completions", json=body)).json()
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    assert all(c["text"] == engine.reply for c in answer["choices"])
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["usage"]["completion_tokens"] == 4 * len(engine.reply)
    chunks = [json.loads(p) for p in sse_payloads((await client.post(
        "/v1/completions", json={**body, "stream": True})).text)[:-1]]
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == dict.fromkeys(range(4), engine.reply)


async def test_models_when_listed_then_created_is_what_the_registry_says(
    client: httpx.AsyncClient,
) -> None:
    data = (await client.get("/v1/models")).json()["data"]
    assert [(m["id"], m["created"]) for m in data] == [(MODEL, 0)]
