"""Start-up time of ``llm-gateway serve``: compiled first start, restart on its cache, eager.

``python -m bench.startup`` runs ``llm-gateway serve`` (``python -m cli serve``) three times
and times each from the process start to ``/ready/<model>`` answering 200 (the chat model's
engine loaded; the embedding model's engine starts beside it):

1. ``--profile cpu`` (compiled) with a new, empty data directory: the first start, which
   fills ``<data_dir>/compile-cache``;
2. the same again on that data directory: a restart that reuses the compile cache;
3. ``--profile dev`` (eager, by default) with another new data directory.

After each start it streams a few greedy chats at one stream (decode speed of that engine),
then stops the server. It writes ``bench/results/<date>-<machine>-startup.{json,md}``.
Nothing is shared with the user's own data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.load import Endpoint, LoadSpec, run_level
from bench.machine import describe
from bench.report import save_run
from bench.targets import REPO, TargetError, free_port
from gateway.settings import load_settings

CACHE = "compile-cache"


@dataclass(frozen=True)
class Start:
    """One ``serve`` start: its label, profile and data directory."""

    label: str
    profile: str
    data_dir: Path


def _dir_mib(folder: Path) -> float:
    if not folder.is_dir():
        return 0.0
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return round(size / 2**20, 1)


def _env(start: Start, admin_key: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LLMGW_DATA_DIR": str(start.data_dir), "LLMGW_AUTH__ADMIN_KEY": admin_key}
    for name in ("LLMGW_PROFILE", "LLMGW_COMPILE_CACHE_DIR"):
        env.pop(name, None)
    return env


def _answers(url: str, every_model: bool) -> bool:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return False
    if not every_model:
        return response.status_code == 200
    return response.status_code == 200 and all(response.json()["models"].values())


def _wait_ready(process: subprocess.Popen[bytes], url: str, started: float, timeout_s: float,
                every_model: bool = False) -> float:
    """Seconds from ``started`` (monotonic) until ``url`` answers 200 (``every_model``: and
    ``/ready`` lists every model ready)."""
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise TargetError(f"serve exited with {process.returncode}")
        if _answers(url, every_model):
            return time.monotonic() - started
        time.sleep(0.5)
    raise TargetError(f"not ready after {timeout_s:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _decode(endpoint: Endpoint, requests: int, max_tokens: int) -> dict[str, Any]:
    stats = asyncio.run(run_level(endpoint, LoadSpec("chat", 1, requests, max_tokens)))
    return dataclasses.asdict(stats)


def measure_start(start: Start, model: str, timeout_s: float, log: Path) -> dict[str, Any]:
    """Start ``serve``, time it to ready, measure decode at one stream, stop it."""
    port, key = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cli", "serve", "--profile", start.profile,
               "--port", str(port)]
    cache_before = _dir_mib(start.data_dir / CACHE)
    with log.open("wb") as out:
        started_at, started = time.time(), time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=_env(start, key), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready_s = _wait_ready(process, f"{base}/ready/{model}", started, timeout_s)
        all_ready_s = _wait_ready(process, f"{base}/ready", started, timeout_s, every_model=True)
        decode = _decode(Endpoint(start.label, base + "/v1", model, key), 3, 128)
    finally:
        _stop(process)
    settings = load_settings(profile=start.profile)
    return {"label": start.label, "profile": start.profile,
            "enforce_eager": settings.models[model].enforce_eager,
            "started_at": time.strftime("%H:%M:%S", time.gmtime(started_at)),
            "ready_s": round(ready_s, 1), "all_ready_s": round(all_ready_s, 1),
            "compile_cache_mib_before": cache_before,
            "compile_cache_mib_after": _dir_mib(start.data_dir / CACHE),
            "compile_cache_parts_mib": {part.name: _dir_mib(part) for part in
                                        sorted((start.data_dir / CACHE).glob("*"))},
            "load_average_1m": os.getloadavg()[0], "decode": decode}


def _attempt(start: Start, model: str, timeout_s: float, log: Path) -> dict[str, Any]:
    """One start's record; a start that fails is recorded with the tail of its log."""
    try:
        return measure_start(start, model, timeout_s, log)
    except TargetError as exc:
        tail = " ".join(log.read_text(errors="replace").splitlines()[-3:])
        return {"label": start.label, "profile": start.profile, "error": f"{exc}: {tail}"}


def plan(root: Path, compiled: str, eager: str | None) -> list[Start]:
    cached = root / "compiled"
    starts = [Start("first start (empty cache)", compiled, cached),
              Start("restart (cache kept)", compiled, cached)]
    return starts + ([Start("eager first start", eager, root / "eager")] if eager else [])


def measure_starts(root: Path, model: str, compiled: str, eager: str | None,
                   timeout_s: float, logs: Path) -> list[dict[str, Any]]:
    """Every start of ``plan`` under ``root`` (data directories), one after another."""
    logs.mkdir(parents=True, exist_ok=True)
    return [_attempt(start, model, timeout_s, logs / f"serve-{i}.log")
            for i, start in enumerate(plan(root, compiled, eager))]


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    rows = ["| start | profile | enforce_eager | chat model ready | every model ready | "
            "compile cache before -> after | decode, 1 stream (3 chats, <= 128 tokens) | "
            "load (1 min) |", "|---|---|---|---|---|---|---|---|"]
    for run in doc["starts"]:
        if "error" in run:
            rows.append(f"| {run['label']} | {run['profile']} | failed: {run['error']} |")
            continue
        speed = run["decode"]["stream_tok_s"]
        rows.append(f"| {run['label']} | {run['profile']} | {run['enforce_eager']} | "
                    f"**{run['ready_s']:.0f} s** | {run['all_ready_s']:.0f} s | "
                    f"{run['compile_cache_mib_before']:.0f} -> "
                    f"{run['compile_cache_mib_after']:.0f} MiB | "
                    f"{f'{speed:.1f} tok/s' if speed else '-'} | "
                    f"{run['load_average_1m']:.2f} |")
    return "\n".join([
        f"# Start-up of `llm-gateway serve` on {machine['cpu']} ({machine['cores_usable']} "
        f"cores), {doc['date']}", "",
        f"vLLM {machine['vllm']}, torch {machine['torch']}, commit {machine['git_commit']}; "
        f"load average at start {machine['load_average_start'][0]:.2f}, at end "
        f"{doc['load_average_end'][0]:.2f}. `python -m bench.startup`: each start is timed "
        f"from the process start to `/ready/{doc['model']}` answering 200 (the chat model's "
        "engine loaded) and to `/ready` listing every model ready (the embedding model's "
        "engine, eager, starts after the chat model's). The restart keeps the first start's data "
        "directory, so its `compile-cache`; the eager start has a data directory of its "
        "own. Decode: greedy chats, streamed, one at a time, through the gateway.", "",
        *([f"**Note:** {doc['note']}", ""] if doc.get("note") else []), *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--compiled-profile", default="cpu")
    parser.add_argument("--eager-profile", default="dev", help="'' skips the eager start")
    parser.add_argument("--kind", default="startup", help="result file: <date>-<machine>-KIND")
    parser.add_argument("--note", default="", help="what this run changed, in its Markdown")
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--logs", type=Path, default=None, help="keep serve's logs here")
    args = parser.parse_args()
    machine = describe()
    with tempfile.TemporaryDirectory(prefix="llmgw-startup-bench-") as tmp:
        starts = measure_starts(Path(tmp), args.model, args.compiled_profile,
                                args.eager_profile, args.timeout_s, args.logs or Path(tmp))
    doc = {"date": date.today().isoformat(), "machine": machine, "model": args.model,
           "note": args.note, "starts": starts, "load_average_end": list(os.getloadavg())}
    print(save_run(doc, args.kind, render).read_text())


if __name__ == "__main__":
    main()
