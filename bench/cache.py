"""The response cache's hit path against the engine path, on one gateway in one run.

``python -m bench.cache`` starts a gateway (profile ``cpu``) with the response cache on
for every key, sends 16 distinct greedy chats one at a time (all misses: the engine
answers), sends the same 16 again (all hits: replayed from the cache), then the same at 16
concurrent streams, and reads the hit rate from the gateway's own metrics. It writes
``bench/results/<date>-<machine>-cache.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.load import LevelStats, LoadSpec, run_level
from bench.machine import describe
from bench.report import save_run
from bench.targets import LaunchOptions, TargetSpec, started
from gateway.settings import load_settings

PHASES = (("engine (miss)", 1), ("cache hit", 1), ("cache hit", 16))


def _hit_counts(metrics_url: str) -> dict[str, float]:
    text = httpx.get(metrics_url, timeout=30).text
    pattern = re.compile(r'^llmgw_response_cache_requests_total\{[^}]*result="(\w+)"[^}]*\} (\S+)$')
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if match := pattern.match(line):
            counts[match[1]] = counts.get(match[1], 0.0) + float(match[2])
    return counts


def measure(model: str, requests: int, max_tokens: int) -> dict[str, Any]:
    settings = load_settings(profile="cpu")
    os.environ["LLMGW_RESPONSE_CACHE__ENABLED_BY_DEFAULT"] = "true"  # the started gateway's
    with tempfile.TemporaryDirectory(prefix="llmgw-cache-bench-") as logs:
        options = LaunchOptions(settings, "cpu", None, 0.0, 900, Path(logs))
        with started(TargetSpec("gateway", model), options) as target:
            endpoint = target.endpoint
            asyncio.run(run_level(endpoint, LoadSpec("rewrite", 1, 1, 8)))  # warm-up
            levels: list[tuple[str, LevelStats]] = []
            for label, concurrency in PHASES:
                spec = LoadSpec("chat", concurrency, max(requests, concurrency), max_tokens)
                levels.append((label, asyncio.run(run_level(endpoint, spec))))
            counts = _hit_counts(endpoint.v1_url.removesuffix("/v1") + "/metrics")
    return {"levels": [{"path": label, **dataclasses.asdict(stats)} for label, stats in levels],
            "cache_requests": counts}


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    rows = ["| path | streams | requests | TTFT p50 ms | TTFT p90 ms | aggregate tok/s "
            "| errors |", "|---|---|---|---|---|---|---|"]
    for level in doc["levels"]:
        rows.append(f"| {level['path']} | {level['concurrency']} | {level['requests']} | "
                    f"{level['ttft_p50_ms']} | {level['ttft_p90_ms']} | {level['tok_s']} | "
                    f"{level['errors']} |")
    engine, hit = doc["levels"][0], doc["levels"][1]
    ratio = (engine["ttft_p50_ms"] / hit["ttft_p50_ms"]) if hit["ttft_p50_ms"] else None
    counts = doc["cache_requests"]
    total = sum(counts.values()) or 1
    return "\n".join([
        f"# Response cache on {machine['cpu']} ({machine['cores_usable']} cores), {doc['date']}",
        "", f"vLLM {machine['vllm']}, commit {machine['git_commit']}; load average at start "
        f"{machine['load_average_start'][0]:.2f}. Greedy chats, max_tokens {doc['max_tokens']}, "
        "streamed; one gateway, the same prompts for every row.", "", *rows, "",
        f"- TTFT p50, engine path / hit path: **{ratio:.0f}x** (one run)." if ratio else "",
        f"- Hit rate from the gateway's own `llmgw_response_cache_requests_total`: "
        f"{counts.get('hit', 0):.0f} hits of {total:.0f} repeatable requests "
        f"({counts.get('hit', 0) / total:.0%}); the warm-up request is a miss.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    machine = describe()
    doc = {"date": date.today().isoformat(), "machine": machine, "max_tokens": args.max_tokens,
           **measure(args.model, args.requests, args.max_tokens),
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, "cache", render).read_text())


if __name__ == "__main__":
    main()
