"""Text completions: ``choices[i].text`` whole or in chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.openai.shapes import CompletionShape, completion_logprobs, usage_json
from gateway.serving.accounting import Settled
from gateway.serving.formatting.responder import (
    CompletionsFraming,
    Json,
    public_finish,
    running_usage,
)
from gateway.serving.plan import GenerationPlan
from gateway.serving.run import RequestRun
from gateway.serving.tally import Tally


class CompletionResponder(CompletionsFraming):
    def __init__(self, plan: GenerationPlan, shape: CompletionShape) -> None:
        self._plan = plan
        self._shape = shape
        self._logprobs = plan.sampling.logprobs is not None

    async def full(self, tally: Tally, settled: Settled) -> Json:
        choices = [self._shape.choice(
            c.index, c.text, completion_logprobs(c.logprobs, 0) if self._logprobs else None,
            public_finish(c.finish_reason)) for c in tally.choices]
        return self._shape.full(choices, usage_json(tally.usage(), settled))

    async def chunks(self, run: RequestRun) -> AsyncIterator[Json]:
        offsets = [0] * len(run.tally.choices)
        async for out in run.outputs():
            usage = running_usage(self._plan.stream_usage, run.tally)
            for delta in out.choices:
                logprobs = None
                if self._logprobs and delta.logprobs:
                    logprobs = completion_logprobs(delta.logprobs, offsets[delta.index])
                offsets[delta.index] += len(delta.text)
                finish = public_finish(delta.finish_reason)
                if delta.text or logprobs is not None or finish is not None:
                    yield self._shape.chunk(delta.index, delta.text, logprobs, finish, usage)

    async def final(self, tally: Tally, settled: Settled) -> Json | None:
        if self._plan.stream_usage == "none":
            return None
        return self._shape.usage_chunk(usage_json(tally.usage(), settled))
