"""Online latency while a batch runs, on one gateway in one run.

``python -m bench.batches`` starts a gateway (profile ``cpu``), measures online streamed
chats alone, then submits a batch (through the Files and Batches API) and measures the same
online chats while the batch runs, then waits for the batch. The worker yields to online
traffic (``batches.yield_above``), so online TTFT and tokens/s should hold. It writes
``bench/results/<date>-<machine>-batches.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import openai

from bench.load import Endpoint, LoadSpec, run_level
from bench.machine import describe
from bench.report import save_run
from bench.targets import LaunchOptions, TargetSpec, started
from gateway.settings import load_settings


def _batch_input(model: str, lines: int, max_tokens: int) -> io.BytesIO:
    rows = [json.dumps({"custom_id": f"line-{i}", "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {"model": model, "max_tokens": max_tokens, "temperature": 0,
                                 "messages": [{"role": "user",
                                               "content": f"Describe the number {i}."}]}})
            for i in range(lines)]
    data = io.BytesIO("\n".join(rows).encode())
    data.name = "batch.jsonl"
    return data


async def _phases(endpoint: Endpoint, lines: int, online: LoadSpec) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=endpoint.v1_url, api_key=endpoint.api_key,
                                max_retries=0)
    alone = await run_level(endpoint, online)
    upload = await client.files.create(file=_batch_input(endpoint.model, lines, 64),
                                       purpose="batch")
    batch = await client.batches.create(input_file_id=upload.id,
                                        endpoint="/v1/chat/completions", completion_window="24h")
    started_at = time.perf_counter()
    await asyncio.sleep(5)  # the worker is busy with batch lines when online traffic arrives
    during = await run_level(endpoint, online)
    while True:
        batch = await client.batches.retrieve(batch.id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            break
        await asyncio.sleep(1)
    batch_s = time.perf_counter() - started_at
    counts = batch.request_counts
    return {"online_alone": dataclasses.asdict(alone), "online_during": dataclasses.asdict(during),
            "batch": {"lines": lines, "status": batch.status, "wall_s": round(batch_s, 1),
                      "completed": counts.completed if counts else None}}


def render(doc: dict[str, Any]) -> str:
    machine, alone, during = doc["machine"], doc["online_alone"], doc["online_during"]
    rows = ["| online traffic | requests | TTFT p50 ms | TTFT p90 ms | tok/s per stream | errors |",
            "|---|---|---|---|---|---|"]
    for label, stats in (("alone", alone), ("while the batch runs", during)):
        rows.append(f"| {label} | {stats['requests']} | {stats['ttft_p50_ms']} | "
                    f"{stats['ttft_p90_ms']} | {stats['stream_tok_s']} | {stats['errors']} |")
    batch = doc["batch"]
    ratio = (during["stream_tok_s"] / alone["stream_tok_s"]
             if alone["stream_tok_s"] and during["stream_tok_s"] else None)
    return "\n".join([
        f"# Online latency under a batch on {machine['cpu']} ({machine['cores_usable']} cores), "
        f"{doc['date']}", "",
        f"vLLM {machine['vllm']}, commit {machine['git_commit']}; load average at start "
        f"{machine['load_average_start'][0]:.2f}. Online: streamed greedy chats one at a time, "
        f"max_tokens {doc['max_tokens']}. Batch: {batch['lines']} chat lines, max_tokens 64, "
        f"batches.concurrency {doc['concurrency']}, yield_above 0.", "", *rows, "",
        f"- Online tok/s per stream while the batch runs / alone: **{ratio:.2f}x** (one run)."
        if ratio else "",
        f"- The batch: {batch['status']}, {batch['completed']} of {batch['lines']} lines in "
        f"{batch['wall_s']} s (online traffic had priority).", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument("--online-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    machine = describe()
    settings = load_settings(profile="cpu")
    online = LoadSpec("chat", 1, args.online_requests, args.max_tokens)
    with tempfile.TemporaryDirectory(prefix="llmgw-batch-bench-") as logs:
        options = LaunchOptions(settings, "cpu", None, 0.0, 900, Path(logs))
        with started(TargetSpec("gateway", args.model), options) as target:
            asyncio.run(run_level(target.endpoint, LoadSpec("rewrite", 1, 1, 8)))  # warm-up
            phases = asyncio.run(_phases(target.endpoint, args.lines, online))
    doc = {"date": date.today().isoformat(), "machine": machine, "max_tokens": args.max_tokens,
           "concurrency": settings.batches.concurrency, **phases,
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, "batches", render).read_text())




if __name__ == "__main__":
    main()
