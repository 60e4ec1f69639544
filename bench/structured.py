"""Decode speed with a JSON schema (structured outputs) against without, in one run.

``python -m bench.structured`` starts one gateway (profile ``cpu``) and sends the same
long-answer chats with and without ``response_format: json_schema`` (an essay object:
a title and a list of paragraphs), taking turns for ``--rounds`` rounds at each
concurrency, so the ratio is read within one run and the machine's drift cancels. It
writes ``bench/results/<date>-<machine>-structured.{json,md}``. Goal: >= 0.9x.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from bench.load import Endpoint, LevelStats, LoadSpec, run_level
from bench.machine import describe
from bench.report import save_run
from bench.targets import LaunchOptions, TargetSpec, started
from gateway.settings import load_settings

ESSAY = {"type": "object", "properties": {
    "title": {"type": "string"},
    "paragraphs": {"type": "array", "items": {"type": "string"}, "minItems": 3}},
    "required": ["title", "paragraphs"], "additionalProperties": False}
SCHEMA = (("response_format", {"type": "json_schema", "json_schema": {
    "name": "essay", "schema": ESSAY, "strict": True}}),)


def _round(endpoint: Endpoint, concurrency: int, requests: int,
           max_tokens: int) -> dict[str, LevelStats]:
    spec = LoadSpec("chat", concurrency, requests, max_tokens)
    return {"plain": asyncio.run(run_level(endpoint, spec)),
            "schema": asyncio.run(run_level(endpoint, dataclasses.replace(spec, extra=SCHEMA)))}


def _ratio(stats: dict[str, LevelStats], field: str) -> float | None:
    plain, schema = getattr(stats["plain"], field), getattr(stats["schema"], field)
    return round(schema / plain, 3) if plain and schema else None


def measure(model: str, levels: list[int], rounds: int, max_tokens: int) -> list[dict[str, Any]]:
    settings = load_settings(profile="cpu")
    out = []
    with tempfile.TemporaryDirectory(prefix="llmgw-structured-bench-") as logs:
        options = LaunchOptions(settings, "cpu", None, 0.0, 900, Path(logs))
        with started(TargetSpec("gateway", model), options) as target:
            _round(target.endpoint, 1, 1, 16)  # warm-up: the grammar compiler too
            for concurrency in levels:
                requests = max(2, concurrency)
                runs = [_round(target.endpoint, concurrency, requests, max_tokens)
                        for _ in range(rounds)]
                out.append({"concurrency": concurrency, "rounds": [
                    {k: dataclasses.asdict(v) for k, v in run.items()} for run in runs],
                    "stream_ratio": statistics.median(
                        [r for run in runs if (r := _ratio(run, "stream_tok_s"))]),
                    "aggregate_ratio": statistics.median(
                        [r for run in runs if (r := _ratio(run, "tok_s"))])})
    return out


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    rows = ["| streams | plain tok/s per stream | schema tok/s per stream | ratio (median "
            "of rounds) | plain aggregate tok/s | schema aggregate tok/s | ratio | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for level in doc["levels"]:
        plain = [r["plain"] for r in level["rounds"]]
        schema = [r["schema"] for r in level["rounds"]]

        def median(items: list[dict[str, Any]], key: str) -> float:
            return round(statistics.median([i[key] or 0.0 for i in items]), 1)

        errors = sum(i["errors"] for i in plain + schema)
        rows.append(f"| {level['concurrency']} | {median(plain, 'stream_tok_s')} | "
                    f"{median(schema, 'stream_tok_s')} | **{level['stream_ratio']:.2f}x** | "
                    f"{median(plain, 'tok_s')} | {median(schema, 'tok_s')} | "
                    f"{level['aggregate_ratio']:.2f}x | {errors} |")
    return "\n".join([
        f"# Structured outputs on {machine['cpu']} ({machine['cores_usable']} cores), "
        f"{doc['date']}", "",
        f"vLLM {machine['vllm']}, commit {machine['git_commit']}; load average at start "
        f"{machine['load_average_start'][0]:.2f}, at end {doc['load_average_end'][0]:.2f}. "
        f"One gateway (profile cpu); greedy long-answer chats, max_tokens {doc['max_tokens']}, "
        f"streamed; with and without `response_format` json_schema (an essay object), taking "
        f"turns, {doc['rounds']} rounds per level; ratios are medians of per-round ratios "
        "(schema / plain; goal >= 0.9x).", "", *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    machine = describe()
    levels = [int(x) for x in args.levels.split(",")]
    doc = {"date": date.today().isoformat(), "machine": machine, "max_tokens": args.max_tokens,
           "rounds": args.rounds,
           "levels": measure(args.model, levels, args.rounds, args.max_tokens),
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, "structured", render).read_text())


if __name__ == "__main__":
    main()
