"""The loads of ``bench.hostile``: maximum-size hostile bodies and their sender, the probes
that measure the event loop (``/health`` latency, a stream's inter-token gaps), and the
statistics the result file records."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

STORY = "Tell me a very long story about a lighthouse keeper and the sea, in many chapters."


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def schema_body(model: str, schema_bytes: int) -> bytes:
    """A chat whose ``response_format`` schema has as many properties as fit in
    ``schema_bytes`` of compact JSON (the size the gateway bounds)."""
    properties: dict[str, Any] = {}
    schema = {"type": "object", "properties": properties}
    size, i = len(_compact(schema)), 0
    while True:
        item = {"type": "string", "description": "a field " * 8, "maxLength": 64,
                "pattern": "^[a-z]+$"}
        size += len(_compact({f"field_{i}": item})) - 1  # less the braces, plus a comma
        if size > schema_bytes:
            break
        properties[f"field_{i}"] = item
        i += 1
    return _compact({"model": model, "max_tokens": 1,
                     "messages": [{"role": "user", "content": "fill"}],
                     "response_format": {"type": "json_schema", "json_schema": {
                         "name": "form", "schema": schema}}}).encode()


def tools_body(model: str, max_bytes: int, max_tools: int) -> bytes:
    """``max_tools`` tools whose parameter schemas share ``max_bytes`` between them."""
    per_tool = max(64, max_bytes // max_tools - 200)
    fields = max(1, per_tool // 120)
    tools = [{"type": "function", "function": {
        "name": f"tool_{t}", "description": "does a thing",
        "parameters": {"type": "object", "properties": {
            f"arg_{i}": {"type": "string", "description": "an argument " * 6}
            for i in range(fields)}}}} for t in range(max_tools)]
    body = {"model": model, "max_tokens": 1, "tool_choice": "none", "tools": tools,
            "messages": [{"role": "user", "content": "use the tools"}]}
    while len(_compact(body)) > max_bytes and fields > 1:
        fields -= 1
        for tool in tools:
            tool["function"]["parameters"]["properties"].pop(f"arg_{fields}")  # type: ignore[index]
    return _compact(body).encode()


def messages_body(model: str, max_messages: int, max_chars: int) -> bytes:
    """``max_messages`` messages sharing ``max_chars`` characters of text."""
    each = max(1, max_chars // max_messages - 1)
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "w " * (each // 2)}
                for i in range(max_messages - 1)] + [{"role": "user", "content": "and?"}]
    return _compact({"model": model, "max_tokens": 1, "messages": messages}).encode()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 1]); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def gaps(times: list[float]) -> list[float]:
    """The gaps between consecutive chunk arrival times (the first chunk's wait excluded)."""
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@dataclass
class Phase:
    """What one phase measured: every ``/health`` latency and inter-token gap, seconds."""

    health_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    streams: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        def ms(values: list[float], q: float) -> float | None:
            value = percentile(values, q)
            return None if value is None else round(value * 1000, 2)

        return {"health_p50_ms": ms(self.health_s, 0.5), "health_p99_ms": ms(self.health_s, 0.99),
                "health_samples": len(self.health_s), "gap_p50_ms": ms(self.gaps_s, 0.5),
                "gap_p99_ms": ms(self.gaps_s, 0.99), "gap_samples": len(self.gaps_s),
                "streams": self.streams, "failures": dict(self.failures)}


def ratio(hostile: float | None, idle: float | None) -> float | None:
    return None if not hostile or not idle else round(hostile / idle, 2)


def verdict(idle: dict[str, Any], hostile: dict[str, Any], bound: float = 2.0) -> dict[str, Any]:
    """Hostile p99 over idle p99, for ``/health`` and the gaps; the goal: both <= bound."""
    health = ratio(hostile["health_p99_ms"], idle["health_p99_ms"])
    gap = ratio(hostile["gap_p99_ms"], idle["gap_p99_ms"])
    met = health is not None and gap is not None and health <= bound and gap <= bound
    return {"health_p99_ratio": health, "gap_p99_ratio": gap, "meets_goal": met}


async def _probe_health(client: httpx.AsyncClient, phase: Phase, deadline: float) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            response = await client.get("/health")
            if response.status_code == 200:
                phase.health_s.append(time.perf_counter() - started)
            else:
                phase.failures[f"health {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            phase.failures[f"health {type(exc).__name__}"] += 1
        await asyncio.sleep(0.05)


async def _stream(client: httpx.AsyncClient, model: str, phase: Phase, deadline: float) -> None:
    body = {"model": model, "stream": True, "temperature": 0, "max_tokens": 128,
            "messages": [{"role": "user", "content": STORY}]}
    while time.monotonic() < deadline:
        times: list[float] = []
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"content"' in line:
                        times.append(time.perf_counter())
            phase.streams += 1
        except httpx.HTTPError as exc:
            phase.failures[f"stream {type(exc).__name__}"] += 1
        phase.gaps_s += gaps(times)


async def measure(base_url: str, key: str, model: str, duration_s: float) -> Phase:
    """``/health`` every 50 ms and back-to-back greedy streams for ``duration_s``."""
    phase = Phase()
    deadline = time.monotonic() + duration_s
    async with httpx.AsyncClient(base_url=base_url, timeout=300,
                                 headers={"authorization": f"Bearer {key}"}) as client:
        await asyncio.gather(_probe_health(client, phase, deadline),
                             _stream(client, model, phase, deadline))
    return phase


async def flood(base_url: str, key: str, bodies: list[bytes], concurrency: int,
                duration_s: float) -> dict[str, int]:
    """``concurrency`` senders posting ``bodies`` in turn, back to back, for ``duration_s``;
    the answers' status codes counted."""
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + duration_s
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    async def sender(client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            try:
                response = await client.post("/v1/chat/completions",
                                             content=bodies[i % len(bodies)], headers=headers)
                statuses[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            i += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        await asyncio.gather(*[sender(client, i) for i in range(concurrency)])
    return dict(statuses)


def flood_process(base_url: str, key: str, bodies: list[bytes], concurrency: int,
                  duration_s: float, out: Any) -> None:
    """``flood`` in its own process (its CPU is not the probes'); the counts put on ``out``."""
    out.put(asyncio.run(flood(base_url, key, bodies, concurrency, duration_s)))
