"""The one record of what an upstream sent for one request, and what it is billed.

The upstream's own ``usage`` is billed exactly when it sends one. Without it (an upstream
that ignores ``stream_options``, or a stream cut short by the client) the prompt is the
tiktoken estimate made at planning and the completion is the tiktoken count of the text
received; such usage is flagged ``estimated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.serving.tally import Usage
from gateway.upstream.tokens import TiktokenCounter


def upstream_usage(raw: object) -> Usage | None:
    """The upstream's usage object as ``Usage``; ``None`` when missing or malformed."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached or 0
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in (prompt, completion, cached)):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int) and isinstance(cached, int)
    return Usage(prompt, completion, min(cached, prompt))


def _calls_text(part: dict[str, Any]) -> str:
    """Tool-call names and arguments are generated tokens too (for estimates)."""
    calls = part.get("tool_calls") or []
    if isinstance(part.get("function_call"), dict):
        calls = [*calls, {"function": part["function_call"]}]
    texts = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts += [v for v in (function.get("name"), function.get("arguments"))
                      if isinstance(v, str)]
    return "".join(texts)


def _text(kind: str, choice: dict[str, Any], streamed: bool) -> str:
    if kind == "completion":
        text = choice.get("text")
        return text if isinstance(text, str) else ""
    part = choice.get("delta" if streamed else "message") or {}
    if not isinstance(part, dict):
        return ""
    text = part.get("content")
    return (text if isinstance(text, str) else "") + _calls_text(part)


@dataclass
class Received:
    kind: str  # "chat" or "completion"
    n: int
    texts: dict[int, list[str]] = field(default_factory=dict)
    finish_reasons: dict[int, str] = field(default_factory=dict)
    usage: Usage | None = None
    content_seen: bool = False

    def add(self, payload: dict[str, Any], *, streamed: bool) -> None:
        """A stream chunk or a whole response."""
        usage = upstream_usage(payload.get("usage"))
        if usage is not None:
            self.usage = usage
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                continue
            index = choice.get("index", 0)
            text = _text(self.kind, choice, streamed)
            self.texts.setdefault(index, []).append(text)
            self.content_seen = self.content_seen or bool(text)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reasons[index] = choice["finish_reason"]

    @property
    def finished(self) -> bool:
        return len(self.finish_reasons) >= self.n

    def billed(self, prompt_estimate: int, counter: TiktokenCounter) -> tuple[Usage, bool]:
        """(usage, estimated): the upstream's when it sent one, else tiktoken counts."""
        if self.usage is not None:
            return self.usage, False
        completion = sum(counter.count("".join(parts)) for parts in self.texts.values())
        return Usage(prompt_estimate, completion), True
