"""The two tenants of the fair-share benchmark, as streaming clients of a running gateway.

Tenant A keeps ``streams`` long completions open; tenant B either sends one short request at
a time (its TTFT is the measure) or keeps its own long streams open (both backlogged: the
served-token shares are the measure). Every chunk carries the usage so far
(``continuous_usage_stats``), so tokens are the engine's counts, timestamped as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import httpx

PROMPT = "Write a long story about a lighthouse keeper and the sea. "


@dataclass
class Tally:
    """Generated tokens per tenant, timestamped (monotonic), and B's TTFTs."""

    tokens: list[tuple[float, str, int]] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    # B's requests cut off by the phase's end before their first token: how long they waited
    censored_s: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # at the phase's end
    errors: dict[str, int] = field(default_factory=dict)

    def tokens_between(self, start: float, end: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for moment, tenant, n in self.tokens:
            if start <= moment < end:
                out[tenant] = out.get(tenant, 0) + n
        return out

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


@dataclass(frozen=True)
class Client:
    http: httpx.AsyncClient
    model: str
    keys: dict[str, str]  # tenant -> bearer key

    async def stream(self, tenant: str, max_tokens: int, tally: Tally,
                     first: list[float] | None = None) -> None:
        """One streamed completion; its tokens go to ``tally``, its TTFT to ``first``."""
        body = {"model": self.model, "prompt": PROMPT, "max_tokens": max_tokens,
                "temperature": 0, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        headers = {"authorization": f"Bearer {self.keys[tenant]}"}
        started, seen = time.monotonic(), 0
        async with self.http.stream("POST", "/v1/completions", json=body,
                                    headers=headers) as reply:
            if reply.status_code != 200:
                await reply.aread()
                tally.error(f"{tenant}:{reply.status_code}")
                return
            async for line in reply.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                usage = json.loads(line[6:]).get("usage") or {}
                done = int(usage.get("completion_tokens", seen))
                if done > seen:
                    now = time.monotonic()
                    if seen == 0 and first is not None:
                        first.append(now - started)
                    tally.tokens.append((now, tenant, done - seen))
                    seen = done


async def keep_open(client: Client, tenant: str, streams: int, max_tokens: int,
                    tally: Tally, stop: asyncio.Event) -> None:
    """``streams`` long completions of ``tenant`` open until ``stop`` (each reopened)."""

    async def worker(tokens: int) -> None:
        while not stop.is_set():
            try:
                await client.stream(tenant, tokens, tally)
            except httpx.HTTPError as exc:
                tally.error(f"{tenant}:{type(exc).__name__}")
                await asyncio.sleep(1)

    # Lengths from 0.5x to 1.5x max_tokens: streams end at different times, as real ones do
    # (all of one length would start and end together, and free their seats at once).
    lengths = [max(1, max_tokens * (2 * streams + 2 * i - streams) // (2 * streams))
               for i in range(streams)]
    await _until(stop, [asyncio.create_task(worker(n)) for n in lengths])


async def one_at_a_time(client: Client, tenant: str, max_tokens: int, tally: Tally,
                        stop: asyncio.Event) -> None:
    """``tenant`` sends a short request, waits for its answer, sends the next. One still
    without its first token when ``stop`` comes is counted as censored (its wait so far)."""

    async def worker() -> None:
        while not stop.is_set():
            first: list[float] = []
            started = time.monotonic()
            try:
                await client.stream(tenant, max_tokens, tally, first)
            except asyncio.CancelledError:
                if not first:
                    tally.censored_s.append(time.monotonic() - started)
                raise
            except httpx.HTTPError as exc:
                tally.error(f"{tenant}:{type(exc).__name__}")
                continue
            if first:
                tally.ttfts_s.append(first[0])

    await _until(stop, [asyncio.create_task(worker())])


async def _until(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    await stop.wait()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
