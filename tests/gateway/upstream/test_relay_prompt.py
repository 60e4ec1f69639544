"""A relayed chat's prompt is what is forwarded: the messages and the tool, function and
response-format definitions. It is reserved so, and billed so when the upstream reports no
usage (a loopback upstream; SQLite and PostgreSQL ledgers)."""

from __future__ import annotations

import json
from typing import Any

from gateway.serving.rendering import ChatPrompt, RenderedMessage
from gateway.upstream.tokens import RelayedChatCounter
from tests.gateway.metered import bearer
from tests.gateway.upstream.conftest import OVERFLOW
from tests.gateway.upstream.openai_upstream import Behaviour, words
from tests.gateway.upstream.test_relay import (
    CHAT,
    O200K,
    chat_estimate,
    relayed,
    settled_row,
    sse_payloads,
)

# A tool whose description alone is ~40 KB: far more prompt than the messages.
LONG = " ".join(f"field{i} is the {i}th value the caller may set" for i in range(900))
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": LONG,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
FUNCTIONS = [{"name": "legacy_lookup", "description": "an old-style function " * 50,
              "parameters": {"type": "object", "properties": {}}}]


def definitions_tokens(sent: dict[str, Any]) -> int:
    """tiktoken's count of the definitions as the upstream received them."""
    return sum(O200K.count(json.dumps(sent[name], separators=(",", ":"), ensure_ascii=False))
               for name in ("tools", "functions", "response_format") if name in sent)


async def test_chat_when_tools_and_format_forwarded_without_usage_then_they_are_reserved_and_billed(
    database_url: str,
) -> None:
    behaviour = Behaviour(send_usage=False)
    body = {**CHAT, "tools": TOOLS, "tool_choice": "auto", "response_format": FORMAT}
    async with relayed(database_url, behaviour) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert response.status_code == 200, response.text
        row = await settled_row(state, response.headers["x-request-id"])
    sent = behaviour.seen[0]["body"]
    definitions = definitions_tokens(sent)
    assert definitions > 5_000 > chat_estimate()  # the definitions are most of the prompt
    prompt = chat_estimate() + definitions
    assert response.json()["usage"]["prompt_tokens"] == prompt
    assert (row.prompt_tokens, row.estimated) == (prompt, True)
    assert row.completion_tokens == O200K.count("".join(words(6)))
    assert row.reserved_tokens == prompt + 6  # and max_tokens: held before dispatch


async def test_stream_when_legacy_functions_sent_and_no_usage_then_billed_with_them(
    database_url: str,
) -> None:
    behaviour = Behaviour(send_usage=False)
    body = {**CHAT, "functions": FUNCTIONS, "stream": True}
    async with relayed(database_url, behaviour) as (client, state, key):
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert response.status_code == 200, response.text
        assert sse_payloads(response.text)[0]["model"] == OVERFLOW
        row = await settled_row(state, response.headers["x-request-id"])
    sent = behaviour.seen[0]["body"]
    assert sent["functions"] == FUNCTIONS
    assert row.prompt_tokens == chat_estimate() + definitions_tokens(sent) > chat_estimate()


def test_counter_when_no_definitions_then_the_messages_alone() -> None:
    prompt = ChatPrompt((RenderedMessage("user", "Say hello to Paris."),))
    plain = RelayedChatCounter(O200K, {"messages": [], "tool_choice": "auto", "tools": None})
    assert plain.render_chat(prompt) == O200K.render_chat(prompt)
    with_tools = RelayedChatCounter(O200K, {"tools": TOOLS})
    extra = O200K.count(json.dumps(TOOLS, separators=(",", ":")))
    assert len(with_tools.render_chat(prompt)) == len(O200K.render_chat(prompt)) + extra
    assert with_tools.vocab_size == O200K.vocab_size
