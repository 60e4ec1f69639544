"""Chat completions: the assistant message (text or tool calls), whole or in chunks; a
reasoning model's span as ``reasoning_content`` (and vLLM's alias ``reasoning``), the
content and tool calls read from what follows it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from engine.protocol import ChoiceDelta
from gateway.openai.shapes import ChatShape, chat_logprobs, usage_json
from gateway.serving.accounting import Settled
from gateway.serving.formatting.responder import (
    CompletionsFraming,
    Json,
    public_finish,
    running_usage,
)
from gateway.serving.plan import GenerationPlan
from gateway.serving.reasoning import Reasoner, ReasoningStream, Split
from gateway.serving.run import RequestRun
from gateway.serving.tally import ChoiceState, Tally
from gateway.serving.toolcalls.calls import CallStream, Extracted, Piece
from gateway.serving.toolcalls.reader import call_stream, extract


class ChatResponder(CompletionsFraming):
    def __init__(self, plan: GenerationPlan, shape: ChatShape, tokenizer: Any,
                 reasoner: Reasoner | None = None) -> None:
        self._plan = plan
        self._reasoner = reasoner
        self._shape = shape
        self._tokenizer = tokenizer  # the model's, for its vLLM tool parser (tool_choice auto)
        self._logprobs = plan.sampling.logprobs is not None

    def _finish(self, reason: str | None, called: bool) -> str | None:
        """OpenAI: ``tool_calls`` (``function_call``) when auto or required tools were called;
        a named choice finishes with ``stop``."""
        tools = self._plan.tools
        if tools is not None and called and reason == "stop" and tools.mode != "named":
            return "function_call" if tools.legacy else "tool_calls"
        return public_finish(reason)

    def _read(self, text: str) -> Extracted:
        if self._plan.tools is None:
            return Extracted(text, ())
        return extract(self._plan.tools, self._tokenizer, text)

    def _split(self, choice: ChoiceState) -> Split:
        if self._reasoner is None:
            return Split(None, choice.text)
        return self._reasoner.split(choice.text)

    async def full(self, tally: Tally, settled: Settled) -> Json:
        choices = []
        for choice in tally.choices:
            split = self._split(choice)
            read = self._read(split.content or "")
            content = read.content if split.reasoning is None else read.content or None
            message = self._shape.message(content, read.calls)
            if self._reasoner is not None:
                message |= {"reasoning_content": split.reasoning, "reasoning": split.reasoning}
            logprobs = chat_logprobs(choice.logprobs) if self._logprobs else None
            choices.append(self._shape.choice(
                choice.index, message, logprobs,
                self._finish(choice.finish_reason, bool(read.calls))))
        return self._shape.full(choices, usage_json(tally.usage(), settled))

    async def chunks(self, run: RequestRun) -> AsyncIterator[Json]:
        count = len(run.tally.choices)
        readers: list[CallStream | None] = [
            None if self._plan.tools is None else call_stream(self._plan.tools, self._tokenizer)
            for _ in range(count)]
        thinking: list[ReasoningStream | None] = [
            None if self._reasoner is None else self._reasoner.stream() for _ in range(count)]
        for index in range(count):
            yield self._shape.chunk(index, {"role": "assistant", "content": "", "refusal": None})
        async for out in run.outputs():
            usage = running_usage(self._plan.stream_usage, run.tally)
            for delta in out.choices:
                for chunk in self._delta_chunks(delta, readers[delta.index],
                                                thinking[delta.index], usage):
                    yield chunk

    def _delta_chunks(self, delta: ChoiceDelta, reader: CallStream | None,
                      thinking: ReasoningStream | None, usage: Json | None) -> list[Json]:
        split = (Split(None, delta.text) if thinking is None
                 else thinking.feed(delta.text, delta.token_ids))
        text = split.content or ""
        piece = Piece(text) if reader is None else reader.feed(text, delta.token_ids)
        logprobs = None
        if self._logprobs and delta.logprobs:
            logprobs = chat_logprobs(delta.logprobs)
        chunks = []
        if split.reasoning is not None:
            chunks.append(self._shape.chunk(delta.index, {
                "reasoning_content": split.reasoning, "reasoning": split.reasoning},
                usage=usage))
        if piece.content or logprobs is not None:
            chunks.append(self._shape.chunk(delta.index, {"content": piece.content}, logprobs,
                                            usage=usage))
        pieces = [piece] if delta.finish_reason is None or reader is None else [piece, reader.end()]
        calls = tuple(c for p in pieces for c in p.calls)
        if calls:
            chunks.append(self._shape.chunk(delta.index, self._shape.call_delta(calls),
                                            usage=usage))
        if delta.finish_reason is not None:
            finish = self._finish(delta.finish_reason, reader is not None and reader.called)
            chunks.append(self._shape.chunk(delta.index, {}, finish=finish, usage=usage))
        return chunks

    async def final(self, tally: Tally, settled: Settled) -> Json | None:
        if self._plan.stream_usage == "none":
            return None
        return self._shape.usage_chunk(usage_json(tally.usage(), settled))
