"""The replica gate's cost (engine/replica_gate.py): latency added per request and per chunk.

``python -m bench.replica_gate`` starts a stand-in vLLM (this module with ``--upstream PORT``: a
bare ASGI app on uvicorn; ``POST /inference/v1/abort_requests`` answers a small JSON body,
``POST /inference/v1/generate`` streams SSE chunks of vLLM's size, each stamped with the
stand-in's monotonic clock as it is written) and the gate as the chart runs it (``llm-gateway
engine gate``), in two builds: the venv's (uvicorn's httptools parser on uvloop) and the slim
gateway image's (h11 on asyncio: that image installs neither; here they are blocked). A client
like the gateway's (engine.remote.default_client) then takes turns, in blocks, between the
stand-in directly and through the gate:

- request: one keep-alive ``POST`` abort, sent to answered (``--requests`` per block);
- chunk: streams of ``--chunks`` chunks written every ``--interval-ms``: the time from the
  stand-in's write to this client's read of each chunk (one clock: CLOCK_MONOTONIC);
- burst: one stream of ``--burst`` chunks written back to back: chunks/s, and the gate
  process's CPU time per chunk and per request (/proc/<pid>/stat).

The added latency is the median over rounds of (through the gate - direct) of each round's
block medians, so the machine's drift between rounds cancels. Three processes and the bench
share the machine's cores (and, on a shared machine, other jobs' load): the run records the
load average. It writes ``bench/results/<date>-<machine>-replica-gate.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import httpx

from bench.machine import describe
from bench.report import save_run
from bench.targets import REPO, free_port
from engine.remote import default_client
from engine.vllm_http import ABORT_PATH, GENERATE_PATH

KEY = "bench-replica-gate-key"
HEADERS = {"authorization": f"Bearer {KEY}"}
CHUNK_BYTES = 360  # one text-mode chunk of vLLM's /inference/v1/generate, about
SLIM = "import sys; sys.modules.update(httptools=None, uvloop=None); import cli; cli.main()"
BUILDS = {"venv (httptools, uvloop)": ["-m", "cli"], "slim image (h11, asyncio)": ["-c", SLIM]}


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The stand-in vLLM: a bare ASGI app (its own cost is in both arms alike)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] != GENERATE_PATH:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    spec = json.loads(body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    pad = "x" * CHUNK_BYTES
    for i in range(int(spec["chunks"])):
        if spec["interval_s"]:
            await asyncio.sleep(spec["interval_s"])
        line = f'data: {{"i": {i}, "t": {time.monotonic_ns()}, "pad": "{pad}"}}\n\n'
        await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                access_log=False)


@contextmanager
def _process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def _requests(client: httpx.AsyncClient, url: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        response = await client.post(url + ABORT_PATH, json={"request_ids": ["x"]},
                                     headers=HEADERS)
        latencies.append(time.perf_counter() - start)
        response.raise_for_status()
    return latencies


async def _stream(client: httpx.AsyncClient, url: str, chunks: int,
                  interval_s: float) -> list[float]:
    """Per chunk: the stand-in's write to this read, in seconds."""
    delays = []
    body = {"chunks": chunks, "interval_s": interval_s}
    async with client.stream("POST", url + GENERATE_PATH, json=body, headers=HEADERS) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                sent = int(line.split('"t": ', 1)[1].split(",", 1)[0])
                delays.append((time.monotonic_ns() - sent) / 1e9)
    if len(delays) != chunks:
        raise RuntimeError(f"{len(delays)} of {chunks} chunks arrived")
    return delays


def _cpu(pid: int) -> float:
    """A process's user + system CPU seconds (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_us": statistics.median(ordered) * 1e6,
            "p90_us": ordered[int(len(ordered) * 0.9)] * 1e6,
            "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6}


async def _measure(direct: str, gated: str, gate: int,
                   args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        kind: {"direct": [], "gate": []} for kind in ("request", "chunk")}
    added: dict[str, list[float]] = {"request": [], "chunk": []}
    gate_cpu = requests_through = 0.0
    async with default_client() as client:
        await _requests(client, gated, 50)  # warm connections and code paths
        for round_ in range(args.rounds):
            arms = [("direct", direct), ("gate", gated)]
            medians: dict[str, dict[str, float]] = {"request": {}, "chunk": {}}
            for arm, url in arms if round_ % 2 == 0 else arms[::-1]:
                before = _cpu(gate)
                latencies = await _requests(client, url, args.requests)
                if arm == "gate":
                    gate_cpu += _cpu(gate) - before
                    requests_through += args.requests
                delays = [d for _ in range(args.streams) for d in await _stream(
                    client, url, args.chunks, args.interval_ms / 1000)]
                for kind, values in (("request", latencies), ("chunk", delays)):
                    samples[kind][arm] += values
                    medians[kind][arm] = statistics.median(values)
            for kind in added:
                added[kind].append(medians[kind]["gate"] - medians[kind]["direct"])
        burst = {}
        for arm, url in (("direct", direct), ("gate", gated)):
            before, start = _cpu(gate), time.perf_counter()
            await _stream(client, url, args.burst, 0.0)
            burst[arm] = {"chunks_per_s": args.burst / (time.perf_counter() - start),
                          "gate_cpu_us_per_chunk": (_cpu(gate) - before) / args.burst * 1e6}
    return {
        "added_us": {kind: statistics.median(v) * 1e6 for kind, v in added.items()},
        "added_us_per_round": {kind: [x * 1e6 for x in v] for kind, v in added.items()},
        "latency": {kind: {arm: _summary(v) for arm, v in arms_.items()}
                    for kind, arms_ in samples.items()},
        "burst": burst,
        "gate_cpu_us_per_request": gate_cpu / requests_through * 1e6,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    upstream_port = free_port()
    direct = f"http://127.0.0.1:{upstream_port}"
    with _process([sys.executable, "-m", "bench.replica_gate", "--upstream",
                   str(upstream_port)]):
        _wait_up(direct)
        for build, argv in BUILDS.items():
            gate_port = free_port()
            command = [sys.executable, *argv, "engine", "gate", "--port", str(gate_port),
                       "--engine-port", str(upstream_port), "--drain-s", "1"]
            with _process(command, {"VLLM_API_KEY": KEY}) as gate:
                gated = f"http://127.0.0.1:{gate_port}"
                _wait_up(gated)
                results[build] = asyncio.run(_measure(direct, gated, gate, args))
    return results


def render(doc: dict[str, Any]) -> str:
    machine, p = doc["machine"], doc["parameters"]
    lines = ["| gate build | added per request | added per chunk | request p50 / p99 direct "
             "| through the gate | chunk p50 / p99 direct | through the gate | burst chunks/s "
             "direct / gate | gate CPU per chunk | gate CPU per request |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for build, r in doc["results"].items():
        lat, burst = r["latency"], r["burst"]

        def pair(kind: str, arm: str, lat: dict[str, Any] = lat) -> str:
            return f"{lat[kind][arm]['median_us']:.0f} / {lat[kind][arm]['p99_us']:.0f} us"
        lines.append(
            f"| {build} | **{r['added_us']['request']:.0f} us** | "
            f"**{r['added_us']['chunk']:.0f} us** | {pair('request', 'direct')} | "
            f"{pair('request', 'gate')} | {pair('chunk', 'direct')} | {pair('chunk', 'gate')} | "
            f"{burst['direct']['chunks_per_s']:.0f} / {burst['gate']['chunks_per_s']:.0f} | "
            f"{burst['gate']['gate_cpu_us_per_chunk']:.0f} us | "
            f"{r['gate_cpu_us_per_request']:.0f} us |")
    return "\n".join([
        f"# Replica gate overhead on {machine['cpu']} ({machine['cores_usable']} cores), "
        f"{doc['date']}", "",
        f"Commit {machine['git_commit']}. Load average at start "
        f"{machine['load_average_start'][0]:.2f}, at end {doc['load_average_end'][0]:.2f}: "
        "a shared, noisy machine (other jobs ran beside the bench), so single samples "
        "and the p99 columns are noisy; the added-latency columns are medians of "
        "per-round paired differences. "
        f"{p['rounds']} rounds; per round and arm {p['requests']} keep-alive requests and "
        f"{p['streams']} streams of {p['chunks']} chunks ({CHUNK_BYTES + 40} bytes) every "
        f"{p['interval_ms']} ms; then one burst of {p['burst']} back-to-back chunks per arm. "
        "The stand-in vLLM, the gate and this client run as three processes on the same "
        "cores.", "", *lines, "",
        "Added = through the gate minus directly to the stand-in. The slim build is what the "
        "chart's sidecar runs (docker/Dockerfile.gateway installs uvicorn without httptools "
        "and uvloop).", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=20000)
    args = parser.parse_args()
    if args.upstream:
        _serve_upstream(args.upstream)
        return
    doc = {"date": date.today().isoformat(), "machine": describe(),
           "parameters": {k: v for k, v in vars(args).items() if k != "upstream"},
           "results": measure(args), "load_average_end": list(os.getloadavg())}
    print(save_run(doc, "replica-gate", render).read_text())


if __name__ == "__main__":
    main()
