"""Several engine requests read as one stream: a completion request with several prompts.

Each prompt runs as its own engine request (``<request id>-<i>``); their outputs merge into
one ``EngineOutput`` stream whose choice ``i * n + j`` is choice ``j`` of prompt ``i`` (as
OpenAI numbers them), whose prompt count is the sum, and which finishes when all have.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from engine.protocol import Engine, EngineOutput, GenerationRequest, SpeculationCounts

_END = object()


@dataclass
class _Part:
    prompt_tokens: int
    cached: int = 0
    finished: bool = False
    speculation: SpeculationCounts | None = None


def _speculation(parts: Sequence[_Part]) -> SpeculationCounts | None:
    counts = [p.speculation for p in parts if p.speculation is not None]
    if not counts:
        return None
    return SpeculationCounts(sum(c.drafted for c in counts), sum(c.accepted for c in counts))


async def _pump(index: int, stream: AsyncIterator[EngineOutput],
                queue: asyncio.Queue[tuple[int, object]]) -> None:
    try:
        async for out in stream:
            await queue.put((index, out))
        await queue.put((index, _END))
    except Exception as exc:  # handed to the reader, which raises it
        await queue.put((index, exc))


async def merged(engine: Engine,
                 requests: Sequence[GenerationRequest]) -> AsyncIterator[EngineOutput]:
    n = requests[0].sampling.n
    parts = [_Part(len(r.prompt_token_ids)) for r in requests]
    queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue()
    streams = [engine.generate(r) for r in requests]
    tasks = [asyncio.create_task(_pump(i, s, queue)) for i, s in enumerate(streams)]
    try:
        while not all(p.finished for p in parts):
            index, item = await queue.get()
            if isinstance(item, Exception):
                raise item
            part = parts[index]
            if item is _END:
                part.finished = True  # a stream that ended without its final output
                continue
            assert isinstance(item, EngineOutput)
            part.cached, part.finished = item.cached_prompt_tokens, item.finished
            part.speculation = item.speculation or part.speculation
            done = all(p.finished for p in parts)
            yield EngineOutput(
                requests[0].request_id, sum(p.prompt_tokens for p in parts),
                sum(p.cached for p in parts),
                tuple(replace(d, index=index * n + d.index) for d in item.choices), done,
                _speculation(parts) if done else None)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
