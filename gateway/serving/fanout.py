"""Several engine requests read as one stream.

A completion request with several prompts runs each prompt as its own engine request, and
``n > 1`` at temperature 0 runs ``n`` copies of a prompt with ``n = 1`` (vLLM refuses
greedy ``n > 1``; OpenAI answers it with ``n`` identical choices, each really generated
here, so every billed token is one the engine produced). Their outputs merge into one
``EngineOutput`` stream: the choices numbered as OpenAI does (prompt by prompt), the
prompt counted once per distinct prompt, finished when all are.
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
    prompt: int  # which distinct prompt this request runs
    first_choice: int  # its choice 0 in the merged numbering
    cached: int = 0
    finished: bool = False
    speculation: SpeculationCounts | None = None


def _parts(requests: Sequence[GenerationRequest], prompts: Sequence[int]) -> list[_Part]:
    parts, first = [], 0
    for request, prompt in zip(requests, prompts, strict=True):
        parts.append(_Part(prompt, first))
        first += request.sampling.n
    return parts


def _cached(parts: Sequence[_Part]) -> int:
    """Prompt tokens served from the prefix cache, per distinct prompt (its least-cached
    copy: a prompt is billed once, at the price of its least favourable run)."""
    by_prompt: dict[int, int] = {}
    for part in parts:
        by_prompt[part.prompt] = min(by_prompt.get(part.prompt, part.cached), part.cached)
    return sum(by_prompt.values())


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


async def merged(engine: Engine, requests: Sequence[GenerationRequest], prompts: Sequence[int],
                 prompt_tokens: int) -> AsyncIterator[EngineOutput]:
    """``prompts[i]``: the distinct prompt request ``i`` runs; ``prompt_tokens``: their sum."""
    parts = _parts(requests, prompts)
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
                requests[0].request_id, prompt_tokens, _cached(parts),
                tuple(replace(d, index=part.first_choice + d.index) for d in item.choices),
                done, _speculation(parts) if done else None)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
