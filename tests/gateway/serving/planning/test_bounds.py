"""Count bounds are checked first, each a 400 naming the field (``limits.*``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.serving.planning.clients import accepted, chat, completion, refused

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
PART = {"type": "text", "text": "hi"}


@pytest.mark.parametrize(("fields", "limits", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}] * 3}, {"max_messages": 2}, "messages"),
    ({"messages": [{"role": "user", "content": [PART] * 2},
                   {"role": "user", "content": [PART] * 2}]},
     {"max_content_parts": 3}, "messages.1.content"),
    ({"tools": [TOOL] * 3, "tool_choice": "none"}, {"max_tools": 2}, "tools"),
    ({"functions": [TOOL["function"]] * 3}, {"max_tools": 2}, "functions"),
    ({"stop": ["a", "b", "c"]}, {"max_stop_sequences": 2}, "stop"),
    ({"logit_bias": {"1": 1, "2": 1, "3": 1}}, {"max_logit_bias": 2}, "logit_bias"),
])
async def test_chat_when_a_count_is_past_its_bound_then_400_naming_the_field(
    fields: dict[str, Any], limits: dict[str, Any], param: str
) -> None:
    error = await refused(chat(**fields), param, **limits)
    assert "at most" in error["message"]


@pytest.mark.parametrize(("fields", "limits", "param"), [
    ({"stop": ["a", "b", "c"]}, {"max_stop_sequences": 2}, "stop"),
    ({"logit_bias": {"1": 1, "2": 1, "3": 1}}, {"max_logit_bias": 2}, "logit_bias"),
])
async def test_completion_when_a_count_is_past_its_bound_then_400_naming_the_field(
    fields: dict[str, Any], limits: dict[str, Any], param: str
) -> None:
    await refused(completion(**fields), param, route="/v1/completions", **limits)


async def test_counts_when_at_their_bounds_then_accepted() -> None:
    await accepted(chat(messages=[{"role": "user", "content": [PART] * 3}],
                        logit_bias={"1": 1, "2": 1}, stop=["a", "b"]),
                   max_content_parts=3, max_logit_bias=2, max_stop_sequences=2)


async def test_counts_when_also_a_schema_is_invalid_then_the_count_is_named_first() -> None:
    """Cheapest first: a bad schema is never checked when a count already refuses."""
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}
    await refused(chat(messages=[{"role": "user", "content": "hi"}] * 3, tools=[bad_tool],
                       tool_choice="none"), "messages", max_messages=2)
