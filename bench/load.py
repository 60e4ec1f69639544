"""A streaming load generator for OpenAI-compatible chat servers.

Each request streams (``stream_options.include_usage``) and records its time to first
token (first chunk with generated text), the gaps between content chunks, and the
completion token count from the server's usage chunk. Text is never re-tokenised: a
server that sends no usage gets its content chunks counted instead, and the result says so.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from bench.prompts import Workload, messages

TokenSource = Literal["usage", "chunks"]


@dataclass(frozen=True)
class Endpoint:
    """Where to send requests: an OpenAI ``/v1`` root and the model name it serves."""

    label: str
    v1_url: str
    model: str
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not self.v1_url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {self.v1_url!r}")
        if not self.model:
            raise ValueError("model must not be empty")

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class LoadSpec:
    workload: Workload
    concurrency: int
    requests: int
    max_tokens: int
    extra: tuple[tuple[str, Any], ...] = ()  # more body fields (e.g. response_format)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.requests < 1 or self.max_tokens < 1:
            raise ValueError("concurrency, requests and max_tokens must be positive")


@dataclass(frozen=True)
class StreamSample:
    """One streamed request, as the client saw it."""

    error: str | None
    ttft_s: float | None
    gaps_s: tuple[float, ...]
    completion_tokens: int
    token_source: TokenSource
    decode_s: float | None  # first to last content chunk


@dataclass(frozen=True)
class LevelStats:
    """One load level: ``requests`` requests, at most ``concurrency`` in flight."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    completion_tokens: int
    tok_s: float  # completion tokens of all requests / wall time of the level
    stream_tok_s: float | None  # mean per-request (tokens - 1) / decode time
    ttft_p50_ms: float | None
    ttft_p90_ms: float | None
    itl_p50_ms: float | None
    itl_p90_ms: float | None
    mean_completion_tokens: float
    token_source: TokenSource
    first_error: str | None = None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def summarise(samples: list[StreamSample], spec: LoadSpec, wall_s: float) -> LevelStats:
    good = [s for s in samples if s.error is None]
    ttfts = [s.ttft_s for s in good if s.ttft_s is not None]
    gaps = [g for s in good for g in s.gaps_s]
    rates = [(s.completion_tokens - 1) / s.decode_s for s in good
             if s.decode_s and s.completion_tokens > 1]
    tokens = sum(s.completion_tokens for s in good)
    source: TokenSource = "usage" if all(s.token_source == "usage" for s in good) else "chunks"
    errors = [s.error for s in samples if s.error is not None]
    return LevelStats(
        concurrency=spec.concurrency, requests=len(samples), errors=len(errors),
        wall_s=round(wall_s, 3), completion_tokens=tokens,
        tok_s=round(tokens / wall_s, 2) if wall_s > 0 else 0.0,
        stream_tok_s=round(statistics.fmean(rates), 2) if rates else None,
        ttft_p50_ms=_ms(_percentile(ttfts, 0.5)), ttft_p90_ms=_ms(_percentile(ttfts, 0.9)),
        itl_p50_ms=_ms(_percentile(gaps, 0.5)), itl_p90_ms=_ms(_percentile(gaps, 0.9)),
        mean_completion_tokens=round(tokens / len(good), 1) if good else 0.0,
        token_source=source, first_error=errors[0] if errors else None,
    )


class _StreamReader:
    """Accumulates the timing of one SSE stream."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.content_times: list[float] = []
        self.usage_tokens: int | None = None
        self.error: str | None = None

    def feed(self, payload: dict[str, Any], now: float) -> None:
        if "error" in payload:
            self.error = str(payload["error"])[:300]
            return
        usage = payload.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            self.usage_tokens = int(usage["completion_tokens"])
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") or choice.get("text"):
                self.content_times.append(now)

    def sample(self) -> StreamSample:
        times = self.content_times
        gaps = tuple(b - a for a, b in itertools.pairwise(times))
        tokens = self.usage_tokens if self.usage_tokens is not None else len(times)
        error = self.error or (None if times else "no content in the stream")
        return StreamSample(
            error=error, ttft_s=times[0] - self.started if times else None, gaps_s=gaps,
            completion_tokens=tokens,
            token_source="usage" if self.usage_tokens is not None else "chunks",
            decode_s=times[-1] - times[0] if len(times) > 1 else None,
        )


async def stream_one(
    client: httpx.AsyncClient, endpoint: Endpoint, workload: Workload, index: int,
    max_tokens: int, extra: tuple[tuple[str, Any], ...] = (),
) -> StreamSample:
    """Send one streaming chat request (greedy, so every target generates the same text)."""
    body = {
        "model": endpoint.model, "messages": messages(workload, index), "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
        "temperature": 0.0, **dict(extra),
    }
    reader = _StreamReader(time.perf_counter())
    try:
        async with client.stream("POST", f"{endpoint.v1_url}/chat/completions", json=body,
                                 headers=endpoint.headers()) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")[:300]
                return _failed(f"HTTP {response.status_code}: {text}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                reader.feed(json.loads(data), time.perf_counter())
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return _failed(f"{type(exc).__name__}: {exc}")
    return reader.sample()


def _failed(message: str) -> StreamSample:
    return StreamSample(message, None, (), 0, "usage", None)


async def run_level(endpoint: Endpoint, spec: LoadSpec, timeout_s: float = 900) -> LevelStats:
    """Closed loop: ``spec.requests`` requests, a new one starting as soon as one ends."""
    gate = asyncio.Semaphore(spec.concurrency)
    limits = httpx.Limits(max_connections=spec.concurrency + 4)
    timeout = httpx.Timeout(timeout_s, connect=30)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(index: int) -> StreamSample:
            async with gate:
                return await stream_one(client, endpoint, spec.workload, index, spec.max_tokens,
                                        spec.extra)

        started = time.perf_counter()
        samples = await asyncio.gather(*(one(i) for i in range(spec.requests)))
        wall = time.perf_counter() - started
    return summarise(list(samples), spec, wall)
