"""A Responses API request as the chat request the pipeline serves, and what the response
object repeats of it.

Input items become chat messages (``instructions`` the system message, ``function_call``
items an assistant message's tool calls, ``function_call_output`` items tool messages);
a ``previous_response_id`` puts the stored conversation first. Tools, ``tool_choice`` and
``text.format`` map onto the chat fields, so tools and structured outputs are the chat path.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from gateway.errors import UnsupportedParameterError
from gateway.openai.bodies import ChatCompletionRequest
from gateway.openai.response_bodies import (
    REFUSED_RESPONSE_FIELDS,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    NamedFunctionChoice,
    ResponsesRequest,
    TextFormatJsonObject,
    TextFormatJsonSchema,
)
from gateway.serving.formatting.responses import ResponseEcho

Json = dict[str, Any]


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(20)


def refuse_unsupported(body: ResponsesRequest) -> None:
    for name, reason in REFUSED_RESPONSE_FIELDS.items():
        if getattr(body, name) not in (None, False, []):
            raise UnsupportedParameterError(f"'{name}' is not supported: {reason}", param=name)
    if body.reasoning is not None and body.reasoning.summary is not None:
        raise UnsupportedParameterError("reasoning summaries are not offered (the reasoning "
                                        "text is)", param="reasoning.summary")


def input_items(body: ResponsesRequest) -> list[Json]:
    """The request's input as items (a string is one user message)."""
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user", "content": body.input}]
    return [item.model_dump(mode="json", exclude_none=True) for item in body.input]


def _parsed(item: Json) -> MessageItem | FunctionCallItem | FunctionCallOutputItem:
    kind = item.get("type", "message")
    if kind == "function_call":
        return FunctionCallItem.model_validate(item)
    if kind == "function_call_output":
        return FunctionCallOutputItem.model_validate(item)
    return MessageItem.model_validate(
        {k: v for k, v in item.items() if k in ("type", "role", "content", "id", "status")})


def messages(instructions: str | None, items: Sequence[Json]) -> list[Json]:
    out: list[Json] = [{"role": "system", "content": instructions}] if instructions else []
    for raw in items:
        item = _parsed(raw)
        if isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            if out and out[-1]["role"] == "assistant" and "tool_calls" in out[-1]:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
        else:
            out.append({"role": item.role, "content": item.text()})
    return out


def _format(body: ResponsesRequest) -> Json | None:
    fmt = body.text.format if body.text is not None else None
    if isinstance(fmt, TextFormatJsonObject):
        return {"type": "json_object"}
    if isinstance(fmt, TextFormatJsonSchema):
        spec = {"name": fmt.name, "schema": fmt.schema_, "description": fmt.description,
                "strict": fmt.strict}
        return {"type": "json_schema", "json_schema": {k: v for k, v in spec.items()
                                                       if v is not None}}
    return None


def _tools(body: ResponsesRequest) -> Json:
    if body.tools is None:
        return {}
    tools = [{"type": "function", "function": tool.model_dump(exclude={"type"},
                                                              exclude_none=True)}
             for tool in body.tools]
    fields: Json = {"tools": tools}
    choice = body.tool_choice
    if isinstance(choice, NamedFunctionChoice):
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        fields["tool_choice"] = choice
    if body.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = body.parallel_tool_calls
    return fields


def to_chat(body: ResponsesRequest, history: Sequence[Json]) -> ChatCompletionRequest:
    refuse_unsupported(body)
    chat: Json = {
        "model": body.model, "messages": messages(body.instructions,
                                                  [*history, *input_items(body)]),
        "stream": bool(body.stream), **_tools(body)}
    if body.stream:
        chat["stream_options"] = {"include_usage": True}
    if (fmt := _format(body)) is not None:
        chat["response_format"] = fmt
    optional = {"max_completion_tokens": body.max_output_tokens, "temperature": body.temperature,
                "top_p": body.top_p, "presence_penalty": body.presence_penalty,
                "frequency_penalty": body.frequency_penalty, "seed": body.seed,
                "user": body.user, "metadata": body.metadata,
                "reasoning_effort": body.reasoning.effort if body.reasoning else None}
    chat.update({k: v for k, v in optional.items() if v is not None})
    return ChatCompletionRequest.model_validate(chat)


def echo(body: ResponsesRequest, response_id: str) -> ResponseEcho:
    """The request fields a response object repeats."""
    text = body.text.model_dump(by_alias=True, exclude_none=True) if body.text else {}
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    choice = body.tool_choice
    fields: Json = {
        "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {}, "parallel_tool_calls": body.parallel_tool_calls
        is not False, "previous_response_id": body.previous_response_id,
        "store": body.store is not False, "temperature": body.temperature,
        "top_p": body.top_p, "tools": tools, "user": body.user, "truncation": "disabled",
        "tool_choice": choice.model_dump() if isinstance(choice, NamedFunctionChoice)
        else (choice or "auto"), "text": {"format": text.get("format", {"type": "text"})},
        "reasoning": {"effort": body.reasoning.effort if body.reasoning else None,
                      "summary": None}, "service_tier": "default"}
    return ResponseEcho(response_id, body.model, tuple(fields.items()))
