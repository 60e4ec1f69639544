"""OpenAI response shapes: whole responses and stream chunks, for chat and text completions.

The one place a response body is spelled; the engine path, the response cache, the batch
worker and the upstream relay all build theirs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.protocol import TokenLogprob
from gateway.serving.accounting import Settled
from gateway.serving.tally import Usage
from gateway.serving.toolcalls.calls import CallDelta, ToolCall

Json = dict[str, Any]


def usage_json(usage: Usage, settled: Settled | None = None) -> Json:
    body: Json = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
    if usage.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if settled is not None and settled.cost is not None:
        body["cost"] = float(settled.cost)  # exact decimal: the x-request-cost header
    return body


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", errors="replace"))


def chat_logprobs(items: Sequence[TokenLogprob]) -> Json:
    return {
        "content": [
            {"token": item.token, "logprob": item.logprob, "bytes": _bytes(item.token),
             "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": _bytes(t.token)}
                              for t in item.top]}
            for item in items
        ],
        "refusal": None,
    }


def completion_logprobs(items: Sequence[TokenLogprob], offset: int) -> Json:
    offsets = []
    for item in items:
        offsets.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [{t.token: t.logprob for t in item.top} for item in items],
        "text_offset": offsets,
    }


@dataclass(frozen=True)
class Envelope:
    """What every body of one response shares."""

    id: str
    model: str
    created: int

    def body(self, obj: str, choices: list[Json], **extra: Any) -> Json:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}


@dataclass(frozen=True)
class ChatShape:
    envelope: Envelope
    legacy_functions: bool = False  # answer calls as ``function_call`` (the functions API)

    def full(self, choices: list[Json], usage: Json) -> Json:
        return self.envelope.body("chat.completion", choices, system_fingerprint=None,
                                  usage=usage)

    def message(self, content: str | None, calls: Sequence[ToolCall]) -> Json:
        message: Json = {"role": "assistant", "content": content, "refusal": None}
        if calls and self.legacy_functions:
            message["function_call"] = {"name": calls[0].name, "arguments": calls[0].arguments}
        elif calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        return message

    @staticmethod
    def choice(index: int, message: Json, logprobs: Json | None, finish: str | None) -> Json:
        return {"index": index, "message": message, "logprobs": logprobs,
                "finish_reason": finish}

    def chunk(self, index: int, delta: Json, logprobs: Json | None = None,
              finish: str | None = None, usage: Json | None = None) -> Json:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        extra = {} if usage is None else {"usage": usage}
        return self.envelope.body("chat.completion.chunk", [choice], system_fingerprint=None,
                                  **extra)

    def call_delta(self, calls: Sequence[CallDelta]) -> Json:
        if self.legacy_functions:
            first = calls[0]
            part = {"arguments": "".join(c.arguments for c in calls)}
            return {"function_call": {"name": first.name, **part} if first.name else part}
        return {"tool_calls": [
            {"index": c.index, "id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} if c.name is not None
            else {"index": c.index, "function": {"arguments": c.arguments}} for c in calls]}

    def usage_chunk(self, usage: Json) -> Json:
        return self.envelope.body("chat.completion.chunk", [], system_fingerprint=None,
                                  usage=usage)


@dataclass(frozen=True)
class CompletionShape:
    envelope: Envelope

    def full(self, choices: list[Json], usage: Json) -> Json:
        return self.envelope.body("text_completion", choices, usage=usage)

    @staticmethod
    def choice(index: int, text: str, logprobs: Json | None, finish: str | None) -> Json:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def chunk(self, index: int, text: str, logprobs: Json | None = None,
              finish: str | None = None, usage: Json | None = None) -> Json:
        extra = {} if usage is None else {"usage": usage}
        return self.envelope.body("text_completion", [self.choice(index, text, logprobs, finish)],
                                  **extra)

    def usage_chunk(self, usage: Json) -> Json:
        return self.envelope.body("text_completion", [], usage=usage)
