"""A closed-loop load generator on aiohttp: ``concurrency`` clients, each sending its next
request when the last one ends, for ``duration_s``.

Streams are read line by line: a ``data:`` chunk that carries a token (a non-empty content
delta, OpenAI's shape, or token ids, vLLM's) stamps the time, so TTFT is send to first token
and the inter-token latency is the gap between two token chunks of one stream. Tokens are
counted from the chunks (one token per stub chunk; usage when the target reports it). A
non-streamed request's latency is send to the whole body. Requests started in the first
``warmup_s`` are left out of the percentiles and the rates; rates count what arrived between
the end of the warm-up and the deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

Protocol = Literal["openai", "vllm"]


@dataclass(frozen=True)
class Target:
    """Where requests go and how they are spelled there."""

    url: str  # the full endpoint URL
    protocol: Protocol
    model: str = "stub"
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        base = {"content-type": "application/json"}
        return base | ({"authorization": f"Bearer {self.api_key}"} if self.api_key else {})

    def body(self, prompt: str, max_tokens: int, stream: bool) -> bytes:
        if self.protocol == "vllm":  # the replica direct: always streamed, as the gateway asks
            words = prompt.split()
            return json.dumps({
                "request_id": uuid.uuid4().hex, "token_ids": list(range(1, len(words) + 9)),
                "sampling_params": {"max_tokens": max_tokens, "n": 1, "temperature": 0.0},
                "stream": True, "stream_options": {"include_usage": True},
                "output_mode": "text"}).encode()
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "stream": stream,
                                "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body).encode()


@dataclass(frozen=True)
class Level:
    concurrency: int
    max_tokens: int
    stream: bool
    duration_s: float
    warmup_s: float = 1.0
    prompt: str = ("Summarise the following request for a benchmark of gateway overhead in a "
                   "few short sentences please")


@dataclass
class _Tally:
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # per measured request
    tokens_in_window: int = 0
    done_in_window: int = 0
    errors: int = 0
    error_sample: str | None = None


def _tokens(line: bytes, protocol: Protocol) -> int:
    chunk = json.loads(line[6:])
    count = 0
    for choice in chunk.get("choices") or ():
        if protocol == "vllm":
            count += len(choice.get("token_ids") or ())
        elif (choice.get("delta") or {}).get("content") or choice.get("text"):
            count += 1
    return count


class _Run:
    def __init__(self, target: Target, level: Level) -> None:
        self.target, self.level, self.tally = target, level, _Tally()
        self.start = time.perf_counter()
        self.warm = self.start + level.warmup_s
        self.deadline = self.start + level.warmup_s + level.duration_s
        self.open_streams = 0  # streams that brought their first token and have not ended

    def _count(self, now: float, tokens: int) -> None:
        if self.warm <= now <= self.deadline:
            self.tally.tokens_in_window += tokens

    async def one(self, session: aiohttp.ClientSession) -> None:
        target, level = self.target, self.level
        body = target.body(level.prompt, level.max_tokens, level.stream)
        sent = time.perf_counter()
        measured = sent >= self.warm
        async with session.post(target.url, data=body, headers=target.headers()) as response:
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {(await response.text())[:200]}")
            if level.stream or target.protocol == "vllm":
                await self._stream(response, sent, measured)
            else:
                payload = await response.json(content_type=None)
                now, tokens = time.perf_counter(), int(payload["usage"]["completion_tokens"])
                self._count(now, tokens)
                if measured:
                    self.tally.latency.append(now - sent)
                    self.tally.tokens.append(tokens)
        now = time.perf_counter()
        if self.warm <= now <= self.deadline:
            self.tally.done_in_window += 1

    async def _stream(self, response: aiohttp.ClientResponse, sent: float,
                      measured: bool) -> None:
        first = last = None
        count = 0
        try:
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                tokens = _tokens(line, self.target.protocol)
                if not tokens:
                    continue
                now = time.perf_counter()
                self._count(now, tokens)
                count += tokens
                if first is None:
                    self.open_streams += 1
                    if measured:
                        self.tally.ttft.append(now - sent)
                elif measured:
                    self.tally.gaps.append(now - (last or now))
                first, last = first or now, now
        finally:
            if first is not None:
                self.open_streams -= 1
        if measured:
            self.tally.latency.append(time.perf_counter() - sent)
            self.tally.tokens.append(count)

    async def client(self, session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < self.deadline:
            try:
                await self.one(session)
            except (aiohttp.ClientError, RuntimeError, ValueError, KeyError) as exc:
                self.tally.errors += 1
                self.tally.error_sample = self.tally.error_sample or repr(exc)[:300]
                await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def summary(tally: _Tally, level: Level) -> dict[str, Any]:
    window = level.duration_s
    return {
        "concurrency": level.concurrency, "stream": level.stream,
        "max_tokens": level.max_tokens, "requests_per_s": round(tally.done_in_window / window, 1),
        "tokens_per_s": round(tally.tokens_in_window / window, 1),
        "ttft_p50_ms": _ms(percentile(tally.ttft, 0.5)),
        "ttft_p99_ms": _ms(percentile(tally.ttft, 0.99)),
        "itl_p50_ms": _ms(percentile(tally.gaps, 0.5)),
        "itl_p99_ms": _ms(percentile(tally.gaps, 0.99)),
        "latency_p50_ms": _ms(percentile(tally.latency, 0.5)),
        "latency_p99_ms": _ms(percentile(tally.latency, 0.99)),
        "requests_measured": len(tally.latency),
        "tokens_per_request": sorted(set(tally.tokens)),  # one value: every answer whole
        "errors": tally.errors,
        "error_sample": tally.error_sample,
    }


async def run_level(target: Target, level: Level,
                    at_window: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """One level; ``at_window("start"|"end", open streams)`` is called at the window's edges
    (the caller reads the target's CPU time and memory there)."""
    run = _Run(target, level)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        clients = [asyncio.create_task(run.client(session)) for _ in range(level.concurrency)]
        if at_window is not None:
            await asyncio.sleep(max(0.0, run.warm - time.perf_counter()))
            at_window("start", run.open_streams)
            await asyncio.sleep(max(0.0, run.deadline - time.perf_counter()))
            at_window("end", run.open_streams)
        await asyncio.gather(*clients)
    return summary(run.tally, level)
