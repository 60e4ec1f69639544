"""The Responses API around a fake engine with the official Python SDK: create, stream (the
official event sequence), tools, stored responses, previous_response_id, tenant isolation,
metering. The real engine: tests/e2e/test_responses_embeddings.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from engine.fake import FakeEngine
from gateway.metering.tables import LedgerRow
from tests.conftest import MODEL
from tests.gateway.metered import (
    bearer,
    create_key,
    metered_client,
    metered_settings,
    metering_of,
    served,
)

WEATHER = {"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}


def sdk(base_url: str, key: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key["key"], max_retries=0)


async def keys(base_url: str, *tenants: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url) as admin:
        return [await create_key(admin, tenant) for tenant in tenants]


async def test_create_when_sdk_sends_text_then_response_object_with_output_text_and_usage(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply="Paris.")
    async with served(engine, metered_settings(database_url)) as server:
        (key,) = await keys(server.base_url, "acme")
        response = await sdk(server.base_url, key).responses.create(
            model=MODEL, input="Capital of France?", instructions="Be brief.")
        assert response.id.startswith("resp_") and response.status == "completed"
        assert response.output_text == "Paris."
        assert response.instructions == "Be brief." and response.store is True
        prompt = "system: Be brief.\nuser: Capital of France?\nassistant: "
        assert response.usage is not None
        assert (response.usage.input_tokens, response.usage.output_tokens) == (
            len(prompt), len("Paris."))


async def test_stream_when_sdk_streams_then_official_event_sequence_and_completed_usage(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply="Hello there")
    async with served(engine, metered_settings(database_url)) as server:
        (key,) = await keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        kinds: list[str] = []
        deltas: list[str] = []
        numbers: list[int] = []
        async with client.responses.stream(model=MODEL, input="hi") as stream:
            async for event in stream:
                kinds.append(event.type)
                numbers.append(event.sequence_number)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = await stream.get_final_response()
        assert kinds[:4] == ["response.created", "response.in_progress",
                             "response.output_item.added", "response.content_part.added"]
        assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                              "response.output_item.done", "response.completed"]
        assert numbers == list(range(len(kinds)))
        assert "".join(deltas) == "Hello there" == final.output_text
        assert final.usage is not None and final.usage.output_tokens == len("Hello there")
        assert getattr(final.usage, "cost", None) is not None  # metered like chat


async def test_stream_when_read_raw_then_each_event_is_named_and_no_done_sentinel(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
            client, _state):
        key = await create_key(client, "acme")
        raw = await client.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                       "stream": True}, headers=bearer(key))
        events = [e for e in raw.text.split("\n\n") if e.strip()]
        for event in events:
            name = next(line[7:] for line in event.splitlines() if line.startswith("event: "))
            data = next(line[6:] for line in event.splitlines() if line.startswith("data: "))
            assert json.loads(data)["type"] == name
        assert "[DONE]" not in raw.text


async def test_previous_response_id_when_given_then_the_stored_turn_is_in_the_prompt(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply="Paris.")
    async with served(engine, metered_settings(database_url)) as server:
        (key,) = await keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        first = await client.responses.create(model=MODEL, input="Capital of France?")
        second = await client.responses.create(model=MODEL, input="And Spain?",
                                               previous_response_id=first.id)
        turn = "user: Capital of France?\nassistant: Paris.\nuser: And Spain?\nassistant: "
        assert second.usage is not None and second.usage.input_tokens == len(turn)
        assert second.previous_response_id == first.id
        fetched = await client.responses.retrieve(first.id)
        assert fetched.output_text == "Paris." and fetched.id == first.id


async def test_stored_response_when_another_tenant_asks_then_404_everywhere(
    database_url: str,
) -> None:
    async with served(FakeEngine(MODEL), metered_settings(database_url)) as server:
        acme, globex = await keys(server.base_url, "acme", "globex")
        mine = await sdk(server.base_url, acme).responses.create(model=MODEL, input="hi")
        theirs = sdk(server.base_url, globex)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.create(model=MODEL, input="x", previous_response_id=mine.id)
        await sdk(server.base_url, acme).responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            await sdk(server.base_url, acme).responses.retrieve(mine.id)


async def test_store_false_when_created_then_not_retrievable(database_url: str) -> None:
    async with served(FakeEngine(MODEL), metered_settings(database_url)) as server:
        (key,) = await keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        response = await client.responses.create(model=MODEL, input="hi", store=False)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)


async def test_tools_when_required_then_function_call_items_and_output_round_trip(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply='[{"name": "get_weather", "parameters": {"city": "P"}}]')
    async with served(engine, metered_settings(database_url)) as server:
        (key,) = await keys(server.base_url, "acme")
        client = sdk(server.base_url, key)
        response = await client.responses.create(model=MODEL, input="Weather?",
                                                 tools=[WEATHER], tool_choice="required")
        [call] = [item for item in response.output if item.type == "function_call"]
        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "P"})
        engine.reply = "Sunny."
        follow = await client.responses.create(
            model=MODEL, previous_response_id=response.id, tools=[WEATHER],
            tool_choice="none",
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22C"}])
        assert follow.output_text == "Sunny."
        assert follow.usage is not None and follow.usage.input_tokens > len("Weather?")


async def test_stream_when_required_tool_then_arguments_stream_as_deltas(
    database_url: str,
) -> None:
    engine = FakeEngine(MODEL, reply='[{"name": "get_weather", "parameters": {"city": "P"}}]')
    async with served(engine, metered_settings(database_url)) as server:
        (key,) = await keys(server.base_url, "acme")
        async with sdk(server.base_url, key).responses.stream(
                model=MODEL, input="Weather?", tools=[WEATHER],  # type: ignore[list-item]
                tool_choice="required") as stream:
            pieces = [e.delta async for e in stream
                      if e.type == "response.function_call_arguments.delta"]
            final = await stream.get_final_response()
        [call] = [item for item in final.output if item.type == "function_call"]
        assert "".join(pieces) == call.arguments and len(pieces) > 2


async def test_create_when_metered_then_one_ledger_row_priced_like_chat(
    database_url: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
            client, state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/responses", json={"model": MODEL, "input": "hi"},
                                     headers=bearer(key))
        assert response.status_code == 200, response.text
        row = await metering_of(state).ledger.row(response.headers["x-request-id"])
        assert row is not None and row.tenant == "acme" and row.status == "ok"
        assert row.completion_tokens == response.json()["usage"]["output_tokens"]
        async with metering_of(state).database.connect() as connection:
            rows = (await connection.execute(select(LedgerRow))).all()
        assert len(rows) == 1


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODEL, "input": "hi", "reasoning": {"effort": "high"}}, "reasoning"),
    ({"model": MODEL, "input": "hi", "background": True}, "background"),
    ({"model": MODEL, "input": [{"type": "input_image", "image_url": "x"}]}, "input"),
    ({"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"},
     "previous_response_id"),
    ({"model": MODEL, "input": "hi", "text": {"format": {
        "type": "json_schema", "name": "x", "schema": {"type": 7}}}},
     "response_format.json_schema.schema"),
])
async def test_create_when_request_is_wrong_then_4xx_naming_the_field(
    database_url: str, body: dict[str, Any], param: str,
) -> None:
    async with metered_client(FakeEngine(MODEL), metered_settings(database_url)) as (
            client, _state):
        key = await create_key(client, "acme")
        response = await client.post("/v1/responses", json=body, headers=bearer(key))
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["param"].startswith(param)
