"""``tool_choice: auto``: the model's own tool-call format, read by vLLM's tool parser.

The parser is the one vLLM's OpenAI server would use for this model (``tool_parser`` in the
model settings: hermes, llama3_json, mistral, ...). It works on vLLM's request type, so a
minimal one carrying the tools is built per request. vLLM's parsers do not check that a
called function was offered; here a call to an unknown function is dropped from the calls
and its text kept as content, so a client never receives a call it cannot dispatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from gateway.serving.plan import ToolPlan
from gateway.serving.planning.tools import template_tools
from gateway.serving.toolcalls.calls import (
    NOTHING,
    CallDelta,
    Extracted,
    Piece,
    ToolCall,
    new_call_id,
)


@cache
def parser_class(name: str) -> Any:
    """vLLM's tool parser class registered under ``name`` (KeyError when unknown)."""
    from vllm.tool_parsers import ToolParserManager

    return ToolParserManager.get_tool_parser(name)


def known_parsers() -> list[str]:
    from vllm.tool_parsers import ToolParserManager

    return sorted(ToolParserManager.list_registered())


def _vllm_request(plan: ToolPlan) -> Any:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    return ChatCompletionRequest.model_validate({
        "model": "gateway", "messages": [{"role": "user", "content": ""}],
        "tools": list(template_tools(plan.tools)), "tool_choice": "auto"})


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class ParsedCalls:
    """One choice read by a fresh parser instance (parsers keep per-stream state)."""

    def __init__(self, plan: ToolPlan, tokenizer: Any) -> None:
        assert plan.parser is not None, "auto tool choice without a parser"
        self._request = _vllm_request(plan)
        self._parser = parser_class(plan.parser)(tokenizer, self._request.tools)
        self._offered = {t.name for t in plan.tools}
        self._text = ""
        self._ids: list[int] = []
        self._called = False
        self._dropped: set[int] = set()  # calls to functions that were not offered

    @property
    def called(self) -> bool:
        return self._called

    def extract(self, text: str) -> Extracted:
        info = self._parser.extract_tool_calls(text, self._request)
        if not info.tools_called:
            return Extracted(text, ())
        calls = tuple(ToolCall(_field(c, "id") or new_call_id(), c.function.name,
                               c.function.arguments) for c in info.tool_calls)
        if any(c.name not in self._offered for c in calls):
            return Extracted(text, ())
        self._called = bool(calls)
        return Extracted(info.content or None, calls)

    def feed(self, text: str, token_ids: Sequence[int]) -> Piece:
        previous, previous_ids = self._text, list(self._ids)
        self._text += text
        self._ids.extend(token_ids)
        delta = self._parser.extract_tool_calls_streaming(
            previous, self._text, text, previous_ids, list(self._ids), list(token_ids),
            self._request)
        return self._piece(delta)

    def end(self) -> Piece:
        """Arguments the parser read but had not sent when the text ended."""
        if not self._called:
            return NOTHING
        rest = self._parser.get_remaining_unstreamed_args()
        index = len(self._parser.prev_tool_call_arr) - 1
        if index in self._dropped:
            return NOTHING
        return Piece(calls=(CallDelta(index, arguments=rest),)) if rest else NOTHING

    def _piece(self, delta: Any) -> Piece:
        if delta is None:
            return NOTHING
        deltas = []
        for call in delta.tool_calls or ():
            function = _field(call, "function") or {}
            name, arguments = _field(function, "name"), _field(function, "arguments") or ""
            if name is not None and name not in self._offered:
                self._dropped.add(call.index)  # never send a call the client cannot dispatch
            if call.index in self._dropped or (name is None and not arguments):
                continue
            deltas.append(CallDelta(call.index, _field(call, "id") or new_call_id(), name,
                                    arguments) if name is not None
                          else CallDelta(call.index, arguments=arguments))
        self._called = self._called or any(d.name is not None for d in deltas)
        return Piece(delta.content or "", tuple(deltas))
