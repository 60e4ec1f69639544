"""Soak a running gateway with concurrent streaming clients; record outcomes, latency, RSS.

``run_soak`` keeps ``concurrency`` clients streaming ``/v1/completions`` for ``duration_s``
and samples the gateway process's resident memory every second. ``write_results`` puts
the JSON and a Markdown summary under ``bench/results/`` with the machine described.
Correctness is asserted by the tests (tests/bench/test_reliability.py); timings here are
records only, and noisy on a shared machine.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class SoakPlan:
    base_url: str
    api_key: str
    model: str
    concurrency: int
    duration_s: float
    max_tokens: int
    pid: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.duration_s <= 0 or self.max_tokens < 1:
            raise ValueError("concurrency, duration_s and max_tokens must be positive")


@dataclass
class SoakResult:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def unexpected(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in ("200", "429"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _one(client: httpx.AsyncClient, plan: SoakPlan, result: SoakResult) -> None:
    body = {"model": plan.model, "prompt": "Count: one, two,", "max_tokens": plan.max_tokens,
            "stream": True}
    started = time.monotonic()
    first: float | None = None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if first is None and line.startswith("data:"):
                    first = time.monotonic() - started
                if line == "data: [DONE]":
                    break
            else:
                if response.status_code == 200:
                    raise RuntimeError("stream ended without [DONE]")
    except (httpx.HTTPError, RuntimeError) as exc:
        result.statuses["transport"] += 1
        result.failures.append(repr(exc)[:200])
        return
    result.statuses[str(response.status_code)] += 1
    if response.status_code == 200:
        result.latencies_s.append(time.monotonic() - started)
        if first is not None:
            result.ttfts_s.append(first)


async def _client_loop(client: httpx.AsyncClient, plan: SoakPlan, result: SoakResult,
                       deadline: float) -> None:
    while time.monotonic() < deadline:
        await _one(client, plan, result)


async def _sample_rss(pid: int, result: SoakResult, deadline: float) -> None:
    while time.monotonic() < deadline:
        result.rss_mib.append(rss_mib(pid))
        await asyncio.sleep(1.0)


async def run_soak(plan: SoakPlan) -> SoakResult:
    result = SoakResult()
    limits = httpx.Limits(max_connections=plan.concurrency,
                          max_keepalive_connections=plan.concurrency)
    headers = {"authorization": f"Bearer {plan.api_key}"}
    timeout = httpx.Timeout(120.0, connect=30.0)
    deadline = time.monotonic() + plan.duration_s
    async with httpx.AsyncClient(base_url=plan.base_url, headers=headers, limits=limits,
                                 timeout=timeout) as client:
        tasks = [asyncio.create_task(_client_loop(client, plan, result, deadline))
                 for _ in range(plan.concurrency)]
        if plan.pid is not None:
            tasks.append(asyncio.create_task(_sample_rss(plan.pid, result, deadline)))
        await asyncio.gather(*tasks)
    return result


def rss_growth(samples: list[float], warmup: int = 5) -> float:
    """Median RSS of the last quarter over the first quarter (after ``warmup`` samples)."""
    steady = samples[warmup:]
    if len(steady) < 8:
        raise ValueError(f"too few RSS samples ({len(samples)}) to compare windows")
    quarter = len(steady) // 4
    early = statistics.median(steady[:quarter])
    late = statistics.median(steady[-quarter:])
    return late / early - 1


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, plan: SoakPlan, result: SoakResult) -> dict[str, Any]:
    plan_fields = {k: v for k, v in asdict(plan).items() if k not in ("api_key", "base_url")}
    return {
        "name": name, "plan": plan_fields, "machine": describe(),
        "requests": result.requests, "statuses": dict(result.statuses),
        "requests_per_s": round(result.requests / plan.duration_s, 1),
        "latency_s": {"p50": _percentile(result.latencies_s, 0.5),
                      "p99": _percentile(result.latencies_s, 0.99)},
        "ttft_s": {"p50": _percentile(result.ttfts_s, 0.5),
                   "p99": _percentile(result.ttfts_s, 0.99)},
        "rss_mib": {"first": result.rss_mib[:1], "last": result.rss_mib[-1:],
                    "max": max(result.rss_mib, default=None),
                    "growth_late_vs_early": (round(rss_growth(result.rss_mib), 4)
                                             if len(result.rss_mib) >= 13 else None)},
        "failures": result.failures[:10],
        "note": "measured on a shared, loaded machine: timings are noisy",
    }


def _markdown(record: dict[str, Any]) -> str:
    lat, ttft, rss = record["latency_s"], record["ttft_s"], record["rss_mib"]
    machine = record["machine"]
    return "\n".join([
        f"# Reliability soak: {record['name']}", "",
        f"Machine: {machine.get('cpu')} ({machine.get('cores_usable')} cores usable, "
        f"load average at start {machine.get('load_average_start')}), "
        f"commit {machine.get('git_commit')}. {record['note']}.", "",
        "| clients | duration s | max_tokens | requests | req/s | statuses | "
        "p50 s | p99 s | TTFT p50 s | TTFT p99 s | RSS growth |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {record['plan']['concurrency']} | {record['plan']['duration_s']} | "
        f"{record['plan']['max_tokens']} | {record['requests']} | {record['requests_per_s']} | "
        f"{record['statuses']} | {_fmt(lat['p50'])} | {_fmt(lat['p99'])} | "
        f"{_fmt(ttft['p50'])} | {_fmt(ttft['p99'])} | {rss['growth_late_vs_early']} |", "",
    ])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_results(record: dict[str, Any], folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"reliability-{record['name']}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(_markdown(record))
    return path
