"""The one record that owns a request's token counts while it runs.

Every count comes from engine token ids. Metering settles from ``Tally.usage()``;
responses read their text, logprobs and finish reasons from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.protocol import EngineOutput, FinishReason, SpeculationCounts, TokenLogprob


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int | None = None  # of the completion tokens; None: no reasoning parser

    def __post_init__(self) -> None:
        if min(self.prompt_tokens, self.completion_tokens, self.cached_tokens) < 0:
            raise ValueError("token counts must be >= 0")
        if self.cached_tokens > self.prompt_tokens:
            raise ValueError("cached tokens cannot exceed prompt tokens")
        if self.reasoning_tokens is not None and not (
                0 <= self.reasoning_tokens <= self.completion_tokens):
            raise ValueError("reasoning tokens are some of the completion tokens")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChoiceState:
    index: int
    text_parts: list[str] = field(default_factory=list)
    token_count: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    token_ids: list[int] = field(default_factory=list)  # kept to count reasoning tokens

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


class Tally:
    """Accumulates ``EngineOutput`` deltas for one request of ``choices`` choices.

    A streamed request keeps no logprobs (each chunk carried its own): what a request holds
    in memory is bounded by what the client sees once.
    """

    def __init__(self, prompt_tokens: int, choices: int, keep_logprobs: bool = True,
                 count_reasoning: Callable[[Sequence[int]], int] | None = None) -> None:
        self.prompt_tokens = prompt_tokens
        self._count_reasoning = count_reasoning  # a reasoning model's: tokens in the span
        self.cached_tokens = 0
        self.choices = [ChoiceState(i) for i in range(choices)]
        self._keep_logprobs = keep_logprobs
        self.speculation: SpeculationCounts | None = None
        self.finished = False

    def add(self, out: EngineOutput) -> None:
        assert not self.finished, "output after the request finished"
        self.prompt_tokens = out.prompt_tokens or self.prompt_tokens
        self.cached_tokens = max(self.cached_tokens, out.cached_prompt_tokens)
        for delta in out.choices:
            choice = self.choices[delta.index]
            choice.text_parts.append(delta.text)
            choice.token_count += len(delta.token_ids)
            if self._count_reasoning is not None:
                choice.token_ids.extend(delta.token_ids)
            if delta.logprobs and self._keep_logprobs:
                choice.logprobs.extend(delta.logprobs)
            if delta.finish_reason is not None:
                choice.finish_reason = delta.finish_reason
        if out.speculation is not None:
            self.speculation = out.speculation
        self.finished = out.finished

    @property
    def completion_tokens(self) -> int:
        return sum(choice.token_count for choice in self.choices)

    @property
    def streamed_anything(self) -> bool:
        return self.completion_tokens > 0

    def usage(self) -> Usage:
        count = self._count_reasoning
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            min(self.cached_tokens, self.prompt_tokens),
            None if count is None else sum(count(c.token_ids) for c in self.choices),
        )
