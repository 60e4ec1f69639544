"""Embedding throughput through the gateway against the same model in sentence-transformers.

``python -m bench.embeddings`` starts one gateway serving only the embedding model
(profile ``cpu``: vLLM's pooling runner) and loads the same folder in sentence-transformers
in this process, then they take turns for ``--rounds`` rounds: inputs/s at batch 1 (one
input per request, one request at a time) and at batch 64 (64 inputs per request, or
``encode(batch_size=64)``). Ratios are medians of per-round ratios, so the machine's drift
cancels. It writes ``bench/results/<date>-<machine>-embeddings.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.load import Endpoint
from bench.machine import describe
from bench.report import save_run
from bench.targets import LaunchOptions, TargetSpec, started
from gateway.settings import load_settings

_SUBJECTS = ("the printing press", "vaccines", "the water cycle", "bicycles", "volcanoes",
             "compilers", "stars", "the sky", "bees", "telephones", "earthquakes",
             "photosynthesis", "chess", "the internet", "Roman roads", "coffee")
_FRAMES = ("{} has a long and surprising history.", "Scientists still argue about {}.",
           "A short guide to {} for beginners.", "Why {} matter more than you think.")


def sentences(count: int) -> list[str]:
    pool = [frame.format(s) for frame in _FRAMES for s in _SUBJECTS]
    return [pool[i % len(pool)] for i in range(count)]


def _rate(inputs: int, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return inputs / (time.perf_counter() - started)


def gateway_rate(client: httpx.Client, endpoint: Endpoint, texts: list[str],
                 batch: int) -> float:
    def run() -> None:
        for start in range(0, len(texts), batch):
            response = client.post(f"{endpoint.v1_url}/embeddings", headers=endpoint.headers(),
                                   json={"model": endpoint.model,
                                         "input": texts[start:start + batch]})
            response.raise_for_status()

    return _rate(len(texts), run)


def measure(model: str, rounds: int, inputs: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    settings = load_settings(profile="cpu")
    texts = sentences(inputs)
    local = SentenceTransformer(str(settings.model_path(model)), device="cpu")
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="llmgw-embeddings-bench-") as logs:
        options = LaunchOptions(settings, "cpu", None, 0.0, 900, Path(logs))
        with started(TargetSpec("gateway", model), options) as target, \
                httpx.Client(timeout=600) as client:
            gateway_rate(client, target.endpoint, texts[:8], 8)  # warm-up
            local.encode(texts[:8])
            for _ in range(rounds):
                row = {}
                for batch in (1, 64):
                    row[f"gateway_b{batch}"] = gateway_rate(client, target.endpoint, texts,
                                                            batch)
                    row[f"st_b{batch}"] = _rate(len(texts), partial(
                        local.encode, texts, batch_size=batch))
                rows.append(row)
    return {"rounds": rows, "inputs": inputs, "threads": os.environ.get("OMP_NUM_THREADS")}


def render(doc: dict[str, Any]) -> str:
    machine, rows = doc["machine"], doc["rounds"]
    lines = ["| batch | gateway inputs/s | sentence-transformers inputs/s | gateway / ST "
             "(median of rounds) |", "|---|---|---|---|"]
    for batch in (1, 64):
        gw = [r[f"gateway_b{batch}"] for r in rows]
        st = [r[f"st_b{batch}"] for r in rows]
        ratio = statistics.median([g / s for g, s in zip(gw, st, strict=True)])
        lines.append(f"| {batch} | {statistics.median(gw):.1f} | {statistics.median(st):.1f} "
                     f"| **{ratio:.2f}x** |")
    return "\n".join([
        f"# Embeddings on {machine['cpu']} ({machine['cores_usable']} cores), {doc['date']}", "",
        f"vLLM {machine['vllm']}, commit {machine['git_commit']}; load average at start "
        f"{machine['load_average_start'][0]:.2f}, at end {doc['load_average_end'][0]:.2f}. "
        f"{doc['model']} (float32): {doc['inputs']} short sentences per measurement, through "
        "the gateway (vLLM's pooling runner, profile cpu; batch 1: one input per request, one "
        "request at a time; batch 64: 64 inputs per request) and in sentence-transformers in "
        f"the bench's own process (`encode(batch_size=...)`), taking turns, {len(rows)} rounds.",
        "", *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inputs", type=int, default=256)
    args = parser.parse_args()
    machine = describe()
    doc = {"date": date.today().isoformat(), "machine": machine, "model": args.model,
           **measure(args.model, args.rounds, args.inputs),
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, "embeddings", render).read_text())


if __name__ == "__main__":
    main()
