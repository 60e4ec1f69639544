"""A reasoning model's output, split by vLLM's own reasoning parser (``reasoning_parser`` in
the model settings: deepseek_r1, qwen3, olmo3, granite, ...): the reasoning span and the
content after it, whole or delta by delta, and the engine's token ids inside the span.

The gateway reads the engine's text and token ids itself, so the same parser serves the
embedded engine and remote replicas. A parser that counts its span's tokens (vLLM's
``count_reasoning_tokens``, e.g. the ``<think>``-token parsers) is asked; for one that
does not (text-marker parsers such as olmo3 and granite, for which vLLM's own server
reports 0) the count is the completion tokens up to and including the one that closes
the span, found by decoding the engine's token ids (or all of them while it is open).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARKER_TOKENS = 8  # an end marker decodes from at most this many tokens


@dataclass(frozen=True)
class Split:
    """One piece of output: what belongs to the reasoning span and what to the content."""

    reasoning: str | None
    content: str | None


def _parser_class(name: str) -> type[Any]:
    from vllm.reasoning import ReasoningParserManager

    try:
        return ReasoningParserManager.get_reasoning_parser(name)
    except KeyError as exc:
        raise ValueError(f"unknown reasoning_parser {name!r}; vLLM's are "
                         f"{', '.join(ReasoningParserManager.list_registered())}") from exc


def _counts_itself(parser: Any) -> bool:
    from vllm.reasoning import ReasoningParser

    method = type(parser).count_reasoning_tokens
    return method is not ReasoningParser.count_reasoning_tokens


class Reasoner:
    """One model's reasoning parser (built once, to check it fits the tokenizer); each
    stream gets a fresh parser, since some keep state between deltas."""

    def __init__(self, name: str, tokenizer: Any) -> None:
        self.name = name
        self._class = _parser_class(name)
        self._tokenizer = tokenizer
        self._parser = self._class(tokenizer)
        self._counts = _counts_itself(self._parser)
        self._end = self._parser.reasoning_end_str

    def split(self, text: str) -> Split:
        reasoning, content = self._parser.extract_reasoning(text, None)
        return Split(reasoning or None, content or None)

    def stream(self) -> ReasoningStream:
        return ReasoningStream(self._class(self._tokenizer))

    def count(self, token_ids: Sequence[int]) -> int:
        """The engine's completion tokens inside the reasoning span."""
        if self._counts:
            return int(self._parser.count_reasoning_tokens(list(token_ids)))
        return self._count_by_text(token_ids)

    def _count_by_text(self, token_ids: Sequence[int]) -> int:
        if not token_ids:
            return 0
        text = self._decode(token_ids)
        if self.split(text).reasoning is None:
            return 0
        if not self._end or self._end not in text:
            return len(token_ids)  # still inside the span
        low, high = 1, len(token_ids)  # the shortest prefix holding the end marker
        while low < high:
            middle = (low + high) // 2
            if self._end in self._decode(token_ids[:middle]):
                high = middle
            else:
                low = middle + 1
        return low

    def _decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))


class ReasoningStream:
    """One choice's stream: each delta (text and token ids) split into reasoning and
    content by the parser's streaming reader."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self._text = ""
        self._ids: list[int] = []

    def feed(self, text: str, token_ids: Sequence[int]) -> Split:
        previous_text, previous_ids = self._text, self._ids
        self._text = previous_text + text
        self._ids = [*previous_ids, *token_ids]
        if not text:
            return Split(None, None)
        delta = self._parser.extract_reasoning_streaming(
            previous_text, self._text, text, previous_ids, self._ids, list(token_ids))
        if delta is None:
            return Split(None, None)
        reasoning = getattr(delta, "reasoning", None) or getattr(
            delta, "reasoning_content", None)
        return Split(reasoning or None, delta.content or None)
