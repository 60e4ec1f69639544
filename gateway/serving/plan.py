"""What one request will run: the prompt(s) as token ids, sampling, and how to read the answer.

A ``GenerationPlan`` is the frozen hand-over from planning to the rest of the pipeline
(cache key, reservation, dispatch, formatting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from engine.protocol import SamplingSpec

Kind = Literal["chat", "completion"]
# What a stream tells about usage: nothing, one final chunk, or every chunk (vLLM's
# ``continuous_usage_stats``). Billing never depends on it.
StreamUsage = Literal["none", "final", "continuous"]
ToolMode = Literal["auto", "required", "named"]


class Reservable(Protocol):
    """What accounting reserves for before dispatch (a generation or an embeddings plan)."""

    @property
    def model(self) -> str: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def choices(self) -> int: ...

    @property
    def completion_budget(self) -> int: ...

    @property
    def worst_case_tokens(self) -> int: ...

    @property
    def sequences(self) -> int:
        """Engine sequences it starts at once: the parallel and in-flight slots it holds."""
        ...

    @property
    def fanout_param(self) -> str:
        """The request field that multiplies its sequences (named when they are too many)."""
        ...


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: str | None = None  # the JSON schema as compact JSON text

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a tool needs a name")


@dataclass(frozen=True)
class ToolPlan:
    """How tool calls are read out of the generated text.

    ``named`` and ``required`` constrain the output with structured outputs (the text *is*
    the arguments, or a JSON list of calls); ``auto`` reads the model's own format with the
    model's vLLM tool parser. ``legacy`` answers with ``function_call`` (``functions`` API).
    """

    mode: ToolMode
    tools: tuple[ToolSpec, ...]
    named: str | None = None
    parallel: bool = True
    parser: str | None = None
    legacy: bool = False

    def __post_init__(self) -> None:
        if not self.tools:
            raise ValueError("a tool plan needs tools")
        if (self.mode == "named") != (self.named is not None):
            raise ValueError("a named tool choice names its tool, and only it")
        if self.named is not None and self.named not in {t.name for t in self.tools}:
            raise ValueError(f"tool {self.named!r} is not among the tools")
        if self.mode == "auto" and not self.parser:
            raise ValueError("tool_choice auto needs the model's tool parser")


@dataclass(frozen=True)
class GenerationPlan:
    kind: Kind
    model: str
    prompts: tuple[tuple[int, ...], ...]  # one engine request each (completions may list several)
    sampling: SamplingSpec
    stream: bool
    stream_usage: StreamUsage = "none"
    tools: ToolPlan | None = None
    constraint_param: str | None = None  # the field a structured-output constraint came from
    user: str | None = None

    def __post_init__(self) -> None:
        if not self.prompts or not all(self.prompts):
            raise ValueError("a plan needs prompt tokens")
        if self.tools is not None and self.kind != "chat":
            raise ValueError("tools are a chat feature")

    @property
    def prompt_token_ids(self) -> tuple[int, ...]:
        """The prompt of a single-prompt plan (chat, and most completions)."""
        assert len(self.prompts) == 1, "a plan of several prompts has no single prompt"
        return self.prompts[0]

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    @property
    def choices(self) -> int:
        """Choices in the response: ``n`` per prompt."""
        return self.sampling.n * len(self.prompts)

    @property
    def completion_budget(self) -> int:
        """Every completion token the request may produce."""
        return self.sampling.max_tokens * self.choices

    @property
    def worst_case_tokens(self) -> int:
        """Prompt plus every completion token the request may produce (for reservations)."""
        return self.prompt_tokens + self.completion_budget

    @property
    def sequences(self) -> int:
        """``n`` per prompt, each its own engine sequence (greedy copies or vLLM's own
        parallel sampling): what the request holds of the parallel and in-flight limits."""
        return self.choices

    @property
    def fanout_param(self) -> str:
        return "n" if self.sampling.n > 1 else "prompt"
