"""OpenAI wire shapes for chat and text completions, full and chunked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.protocol import ChoiceDelta, TokenLogprob
from gateway.serving.planning import Kind
from gateway.serving.tally import ChoiceState, Tally, Usage

Json = dict[str, Any]


def usage_json(usage: Usage, extra: Json | None = None) -> Json:
    body: Json = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
    body.update(extra or {})
    return body


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", errors="replace"))


def _chat_logprobs(items: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> Json:
    return {
        "content": [
            {
                "token": item.token,
                "logprob": item.logprob,
                "bytes": _bytes(item.token),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": _bytes(t.token)}
                    for t in item.top
                ],
            }
            for item in items
        ],
        "refusal": None,
    }


def _completion_logprobs(
    items: tuple[TokenLogprob, ...] | list[TokenLogprob], offset: int
) -> Json:
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


def _public_finish(reason: str | None) -> str | None:
    return "stop" if reason in ("abort", "error") else reason


@dataclass(frozen=True)
class ResponseFormat:
    """Builds the JSON a client sees for one request."""

    kind: Kind
    request_id: str
    model: str
    created: int
    want_logprobs: bool

    @property
    def _object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"

    def _envelope(self, obj: str, choices: list[Json]) -> Json:
        body: Json = {"id": self.request_id, "object": obj, "created": self.created,
                      "model": self.model, "choices": choices}
        if self.kind == "chat":
            body["system_fingerprint"] = None
        return body

    def full(self, tally: Tally, usage_extra: Json | None = None) -> Json:
        body = self._envelope(self._object, [self._full_choice(c) for c in tally.choices])
        body["usage"] = usage_json(tally.usage(), usage_extra)
        return body

    def _full_choice(self, choice: ChoiceState) -> Json:
        logprobs = None
        if self.want_logprobs:
            logprobs = (_chat_logprobs(choice.logprobs) if self.kind == "chat"
                        else _completion_logprobs(choice.logprobs, 0))
        finish = _public_finish(choice.finish_reason)
        if self.kind == "chat":
            message = {"role": "assistant", "content": choice.text, "refusal": None}
            return {"index": choice.index, "message": message, "logprobs": logprobs,
                    "finish_reason": finish}
        return {"index": choice.index, "text": choice.text, "logprobs": logprobs,
                "finish_reason": finish}

    def _chunk(self, choices: list[Json]) -> Json:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return self._envelope(obj, choices)

    def role_chunk(self, index: int) -> Json:
        """The first chat chunk of each choice announces the assistant role."""
        delta = {"role": "assistant", "content": "", "refusal": None}
        return self._chunk([{"index": index, "delta": delta, "logprobs": None,
                             "finish_reason": None}])

    def delta_chunk(self, delta: ChoiceDelta, text_offset: int) -> Json | None:
        """A chunk carrying new text; None when the delta holds nothing to show."""
        has_logprobs = self.want_logprobs and bool(delta.logprobs)
        if not delta.text and not has_logprobs:
            return None
        logprobs = None
        if has_logprobs and delta.logprobs is not None:
            logprobs = (_chat_logprobs(delta.logprobs) if self.kind == "chat"
                        else _completion_logprobs(delta.logprobs, text_offset))
        if self.kind == "chat":
            return self._chunk([{"index": delta.index, "delta": {"content": delta.text},
                                 "logprobs": logprobs, "finish_reason": None}])
        return self._chunk([{"index": delta.index, "text": delta.text, "logprobs": logprobs,
                             "finish_reason": None}])

    def finish_chunk(self, index: int, reason: str | None) -> Json:
        finish = _public_finish(reason)
        if self.kind == "chat":
            return self._chunk([{"index": index, "delta": {}, "logprobs": None,
                                 "finish_reason": finish}])
        return self._chunk([{"index": index, "text": "", "logprobs": None,
                             "finish_reason": finish}])

    def usage_chunk(self, usage: Usage, usage_extra: Json | None = None) -> Json:
        body = self._chunk([])
        body["usage"] = usage_json(usage, usage_extra)
        return body
