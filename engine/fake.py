"""A deterministic stand-in engine for fast tests of gateway logic and load on the gateway.

Its "tokenizer" is one token per character (token id = code point), and it answers
every prompt with ``reply`` (cut by stop strings and max_tokens), one token per step.
It is never the only test of a feature: the real engine tests run against vLLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineRequestError, EngineUnavailableError
from engine.protocol import (
    ChoiceDelta,
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    EngineStats,
    GenerationRequest,
    TokenLogprob,
    TopLogprob,
)


class CharRenderer:
    """One token per character; a chat renders as ``role: content`` lines (tool calls as
    ``name(arguments)``, offered tools as one ``tools:`` line first)."""

    vocab_size = 0x110000

    def render_chat(self, prompt: Any) -> list[int]:
        lines = [f"tools: {','.join(t['function']['name'] for t in prompt.tools)}\n"
                 if prompt.tools else ""]
        for m in prompt.messages:
            calls = "".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            lines.append(f"{m.role}: {m.content}{calls}\n")
        suffix = "assistant: " if prompt.add_generation_prompt else ""
        return self.encode("".join(lines) + suffix)

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def encode_input(self, text: str) -> list[int]:
        return self.encode(text)


@dataclass
class FakeEngine:
    model_name: str = "fake-model"
    reply: str = "The capital of France is Paris."
    token_delay_s: float = 0.0
    max_model_len: int = 2048
    ready: bool = True
    fail_after_tokens: int | None = None
    embedding_size: int = 0  # > 0: an embedding model whose vectors have this many values
    aborted: list[str] = field(default_factory=list)
    adapters_used: list[str | None] = field(default_factory=list)  # each request's LoRA name
    _running: set[str] = field(default_factory=set)
    _prompt_total: int = 0
    _generation_total: int = 0

    async def start(self) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False

    async def is_ready(self) -> bool:
        return self.ready

    async def abort(self, request_id: str) -> None:
        if request_id in self._running:
            self.aborted.append(request_id)
            self._running.discard(request_id)

    def stats(self) -> EngineStats:
        return EngineStats(
            running=len(self._running), waiting=0, kv_cache_usage=0.0,
            prompt_tokens_total=self._prompt_total,
            generation_tokens_total=self._generation_total,
            unfinished_requests=len(self._running),
        )

    def _script(self, request: GenerationRequest) -> tuple[str, str]:
        """The text this request will produce and its finish reason."""
        text, reason = self.reply, "stop"
        for stop in request.sampling.stop:
            if stop in text:
                text = text[: text.index(stop)]
        if len(text) > request.sampling.max_tokens:
            text, reason = text[: request.sampling.max_tokens], "length"
        return text, reason

    def _delta(self, request: GenerationRequest, index: int, char: str, last: bool,
               reason: str) -> ChoiceDelta:
        logprobs = None
        if request.sampling.logprobs is not None:
            top = tuple(TopLogprob(char, -0.5) for _ in range(request.sampling.logprobs))
            logprobs = (TokenLogprob(ord(char), char, -0.5, top),)
        return ChoiceDelta(index, (ord(char),), char, logprobs,
                           reason if last else None)  # type: ignore[arg-type]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        if not self.ready:
            raise EngineUnavailableError("fake engine is not ready")
        rid = request.request_id
        self.adapters_used.append(None if request.lora is None else request.lora.name)
        self._running.add(rid)
        self._prompt_total += len(request.prompt_token_ids) * request.sampling.n
        text, reason = self._script(request)
        try:
            for step, char in enumerate(text or " "):
                if rid not in self._running:  # aborted: vLLM's last output, nothing new in it
                    yield self._aborted(request)
                    return
                if self.fail_after_tokens is not None and step >= self.fail_after_tokens:
                    raise EngineUnavailableError("fake engine crashed")
                await asyncio.sleep(self.token_delay_s)
                last = step == len(text or " ") - 1
                deltas = tuple(self._delta(request, i, char, last, reason)
                               for i in range(request.sampling.n))
                self._generation_total += request.sampling.n
                yield EngineOutput(rid, len(request.prompt_token_ids), 0, deltas, last)
        finally:
            self._running.discard(rid)

    def _aborted(self, request: GenerationRequest) -> EngineOutput:
        closing = tuple(ChoiceDelta(i, (), "", None, "abort") for i in range(request.sampling.n))
        return EngineOutput(request.request_id, len(request.prompt_token_ids), 0, closing, True)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        """A unit vector that depends on the tokens only (same input, same vector)."""
        if self.embedding_size <= 0:
            raise EngineRequestError("this model does not pool embeddings")
        if not self.ready:
            raise EngineUnavailableError("fake engine is not ready")
        await asyncio.sleep(self.token_delay_s)
        size = request.dimensions or self.embedding_size
        raw = [float((sum(request.prompt_token_ids) * (i + 1)) % 97 + 1) for i in range(size)]
        norm = sum(v * v for v in raw) ** 0.5
        self._prompt_total += len(request.prompt_token_ids)
        return EmbeddingOutput(request.request_id, len(request.prompt_token_ids),
                               tuple(v / norm for v in raw))
