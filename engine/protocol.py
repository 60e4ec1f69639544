"""The one interface the gateway calls: token ids in, token-level deltas out.

Embedded (in-process vLLM) and remote (HTTP replica) engines implement ``Engine``;
routes never know which one they talk to. Every count the gateway bills comes from
the token ids carried here, never from re-tokenising text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "abort", "error"]
MAX_TOP_LOGPROBS = 20
# Upper bounds (seconds) of the engine's queue-time histogram; a last bucket holds the rest.
QUEUE_TIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


StructuredKind = Literal["json", "json_object", "regex", "choice", "grammar", "structural_tag"]


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on what the engine may generate (vLLM's structured outputs).

    ``spec`` is the JSON schema (compact JSON) for ``json``, the pattern for ``regex``, the
    grammar for ``grammar`` and the tag's JSON for ``structural_tag``; ``choices`` holds the
    alternatives for ``choice``; ``json_object`` needs neither.
    """

    kind: StructuredKind
    spec: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.choices or self.spec:
                raise ValueError("a choice constraint lists its choices and nothing else")
        elif self.kind == "json_object":
            if self.spec or self.choices:
                raise ValueError("a json_object constraint takes no spec")
        elif not self.spec or self.choices:
            raise ValueError(f"a {self.kind} constraint needs its spec")


@dataclass(frozen=True)
class SamplingSpec:
    """Sampling parameters, already validated against the gateway's bounds.

    The first group is OpenAI's; the rest are vLLM's own extensions that its OpenAI server
    accepts too (``top_k`` 0 and ``allowed_token_ids`` None mean off).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: off; k: the sampled token plus k alternatives
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias in [-100, 100])
    structured: StructuredOutput | None = None
    ignore_eos: bool = False
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    min_tokens: int = 0
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    bad_words: tuple[str, ...] = ()
    allowed_token_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be in [0, 2]")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if not -2.0 <= self.presence_penalty <= 2.0 or not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError("penalties must be in [-2, 2]")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"logprobs must be in [0, {MAX_TOP_LOGPROBS}]")
        if any(not -100.0 <= bias <= 100.0 for _, bias in self.logit_bias):
            raise ValueError("logit_bias values must be in [-100, 100]")
        self._check_extensions()

    def _check_extensions(self) -> None:
        if self.top_k < 0 or not 0.0 <= self.min_p <= 1.0:
            raise ValueError("top_k must be >= 0 and min_p in [0, 1]")
        if not 0.0 < self.repetition_penalty <= 2.0:
            raise ValueError("repetition_penalty must be in (0, 2]")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError("min_tokens must be in [0, max_tokens]")
        if self.allowed_token_ids is not None and not self.allowed_token_ids:
            raise ValueError("allowed_token_ids must not be empty")


MAX_CACHE_SALT_CHARS = 128  # vLLM's server refuses longer salts, and these characters:
CACHE_SALT_FORBIDDEN = frozenset("@/\\\0")


@dataclass(frozen=True)
class LoraTarget:
    """A LoRA adapter a request runs on: its name, the engine's integer id for it (stable per
    name) and its folder (peft's ``adapter_config.json`` and weights)."""

    name: str
    lora_id: int
    path: str

    def __post_init__(self) -> None:
        if not self.name or self.lora_id < 1 or not self.path:
            raise ValueError("a LoRA target needs a name, an id >= 1 and a path")


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingSpec
    priority: int = 0
    cache_salt: str | None = None  # computed by the gateway (per tenant); the engine salts with it
    lora: LoraTarget | None = None  # run on this adapter of the engine's model

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("request_id must not be empty")
        if not self.prompt_token_ids:
            raise ValueError("prompt must contain at least one token")
        salt = self.cache_salt
        if salt is not None and (not 0 < len(salt) <= MAX_CACHE_SALT_CHARS
                                 or CACHE_SALT_FORBIDDEN.intersection(salt)):
            raise ValueError(f"cache_salt must be 1-{MAX_CACHE_SALT_CHARS} characters, "
                             "without '@', '/', '\\' or NUL (as vLLM's server requires)")


@dataclass(frozen=True)
class EmbeddingRequest:
    """One input of an embedding model (its pooling runner), as token ids."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    dimensions: int | None = None  # a Matryoshka model's shorter output; None: its full size
    priority: int = 0

    def __post_init__(self) -> None:
        if not self.request_id or not self.prompt_token_ids:
            raise ValueError("an embedding request needs an id and tokens")
        if self.dimensions is not None and self.dimensions < 1:
            raise ValueError("dimensions must be at least 1")


@dataclass(frozen=True)
class EmbeddingOutput:
    request_id: str
    prompt_tokens: int  # what the engine processed: the tokens billed
    embedding: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or not self.embedding:
            raise ValueError("an embedding has tokens and values")


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class ChoiceDelta:
    """New tokens for one of the ``n`` choices since the previous output."""

    index: int
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class SpeculationCounts:
    drafted: int
    accepted: int

    def __post_init__(self) -> None:
        if not 0 <= self.accepted <= self.drafted:
            raise ValueError("accepted must be within [0, drafted]")


@dataclass(frozen=True)
class EngineOutput:
    """One step of one request: deltas for the choices that advanced."""

    request_id: str
    prompt_tokens: int
    cached_prompt_tokens: int
    choices: tuple[ChoiceDelta, ...]
    finished: bool
    speculation: SpeculationCounts | None = None


@dataclass(frozen=True)
class EngineStats:
    running: int
    waiting: int
    kv_cache_usage: float
    prompt_tokens_total: int
    generation_tokens_total: int
    unfinished_requests: int
    spec_drafted_total: int = 0
    spec_accepted_total: int = 0
    spec_accepted_per_position: tuple[int, ...] = field(default_factory=tuple)
    spec_drafts_total: int = 0  # verify steps that carried drafts (per-position denominator)
    spec_window_acceptance: float | None = None  # over the configured recent window
    spec_window_rate_by_position: tuple[float, ...] = field(default_factory=tuple)
    spec_draft_stale: bool = False  # window acceptance below the configured floor
    # Finished requests per QUEUE_TIME_BUCKETS_S bucket (not cumulative; last: above all).
    queue_time_counts: tuple[int, ...] = field(default_factory=tuple)
    queue_time_sum_s: float = 0.0


@runtime_checkable
class Engine(Protocol):
    """What every engine offers the gateway."""

    @property
    def model_name(self) -> str: ...

    @property
    def max_model_len(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]: ...

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        """Pool one input (an embedding model); a generating model raises
        ``EngineRequestError``."""
        ...

    async def abort(self, request_id: str) -> None: ...

    async def is_ready(self) -> bool: ...

    def stats(self) -> EngineStats: ...
