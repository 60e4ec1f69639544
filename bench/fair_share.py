"""Fair share under saturation (issue #32): tenant B's latency and each tenant's share of a
saturated engine, first-come (``limits.fair_queue: false``) against the gateway's fair queue.

Starts a real gateway (profile ``test``, chat model only, ``max_num_seqs`` = ``--seats``)
once per mode. Tenant A keeps 4 x seats long streams open; phases:

- unloaded: B alone, one short request at a time (its TTFT without A);
- ttft: A saturating, B one short request at a time (first-come and fair);
- shares: both tenants keep 2 x seats long streams open (both backlogged) with weights
  1:1 (first-come and fair) and 3:1 (fair): the tokens each was served in the phase's
  last part, and the aggregate tokens/s.

``python -m bench.fair_share`` or ``llm-gateway bench --sections fair-share`` (defaults: 32
seats, the default reserve, 120 s phases); results in bench/results/. Timings on
a shared machine are noisy: the load average is recorded at both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.fair_share_load import Client, Tally, keep_open, one_at_a_time
from bench.fair_share_report import render
from bench.machine import describe
from bench.served_gateway import served_gateway

RESULTS = Path(__file__).resolve().parent / "results"
ADMIN = {"authorization": "Bearer test-admin-key-0123456789"}  # the test profile's
MODEL = "smollm2-135m-instruct"
READY_TIMEOUT_S = 600


@contextlib.contextmanager
def gateway(fair: bool, seats: int, logs: Path, port: int, reserve: float) -> Iterator[str]:
    """``llm-gateway serve --profile test`` with the fair queue on or off."""
    env = {f"LLMGW_MODELS__{MODEL}__MAX_NUM_SEQS": str(seats),
           "LLMGW_LIMITS__FAIR_QUEUE": str(fair).lower(), "LLMGW_LIMITS__QUEUE_TIMEOUT_S": "600",
           "LLMGW_LIMITS__QUEUE_RESERVE": str(reserve)}
    log = logs / f"gateway-{'fair' if fair else 'fcfs'}.log"
    with served_gateway(port, log, env, ready_timeout_s=READY_TIMEOUT_S) as url:
        yield url


async def _tenants(http: httpx.AsyncClient) -> dict[str, str]:
    keys = {}
    for tenant in ("a", "b"):
        made = await http.post("/admin/tenants", json={"name": tenant}, headers=ADMIN)
        if made.status_code != 409:  # 409: made by an earlier run on this ledger
            made.raise_for_status()
        key = await http.post("/admin/keys", json={"tenant": tenant}, headers=ADMIN)
        key.raise_for_status()
        keys[tenant] = str(key.json()["key"])
    return keys


async def _weight(http: httpx.AsyncClient, tenant: str, weight: float) -> None:
    (await http.patch(f"/admin/tenants/{tenant}", json={"weight": weight},
                      headers=ADMIN)).raise_for_status()


async def _run(seconds: float, *jobs: Any) -> Tally:
    """Run job factories (tally, stop) -> coroutine for ``seconds``."""
    tally, stop = Tally(), asyncio.Event()
    tasks = [asyncio.create_task(job(tally, stop)) for job in jobs]
    started = time.monotonic()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    tally.tokens = [(t - started, who, n) for t, who, n in tally.tokens]
    tally.load_average = [round(x, 1) for x in os.getloadavg()]
    return tally


async def _after(delay_s: float, job: Any) -> None:
    """B starts once A's streams fill the engine (and, first-come, its queue)."""
    await asyncio.sleep(delay_s)
    await job


def _ttfts(tally: Tally, window: tuple[float, float] | None = None) -> dict[str, Any]:
    """B's TTFTs; with ``window``, the tokens/s of both tenants in it (B's phase part)."""
    done = sorted(tally.ttfts_s)
    out = {"n": len(done), "p50_s": _pct(done, 50), "p95_s": _pct(done, 95),
           "censored": len(tally.censored_s),
           "censored_max_wait_s": round(max(tally.censored_s), 2) if tally.censored_s else None,
           "errors": tally.errors, "load_average_end": tally.load_average}
    if window is not None:
        served = tally.tokens_between(*window)
        out["tokens"] = served
        out["tokens_per_s"] = round(sum(served.values()) / (window[1] - window[0]), 1)
    return out


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 3)


def _shares(tally: Tally, seconds: float, skip_s: float) -> dict[str, Any]:
    window = seconds - skip_s
    served = tally.tokens_between(skip_s, seconds)
    total = sum(served.values())
    return {"window_s": window, "tokens": served,
            "share_a": round(served.get("a", 0) / total, 3) if total else None,
            "tokens_per_s": round(total / window, 1), "errors": tally.errors,
            "load_average_end": tally.load_average}


async def measure(url: str, fair: bool, args: argparse.Namespace) -> dict[str, Any]:
    seats, phase_s, out = args.seats, args.phase_s, {}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(900.0),
                                 limits=limits) as http:
        client = Client(http, MODEL, await _tenants(http))
        if not fair:
            out["unloaded"] = _ttfts(await _run(args.unloaded_s, lambda t, s: one_at_a_time(
                client, "b", args.short_tokens, t, s)))
        out["ttft"] = _ttfts(await _run(
            phase_s, lambda t, s: keep_open(client, "a", 4 * seats, args.long_tokens, t, s),
            lambda t, s: _after(phase_s / 4, one_at_a_time(client, "b", args.short_tokens, t,
                                                            s))), (phase_s / 4, phase_s))
        for ratio in (1, 3) if fair else (1,):
            await _weight(http, "a", float(ratio))
            tally = await _run(phase_s, *(
                (lambda t, s, who=who: keep_open(client, who, 2 * seats, args.long_tokens, t, s))
                for who in ("a", "b")))
            out[f"shares_{ratio}_1"] = _shares(tally, phase_s, phase_s / 3)
    return out


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=32, help="the engine's max_num_seqs")
    parser.add_argument("--reserve", type=float, default=0.03, help="limits.queue_reserve")
    parser.add_argument("--phase-s", type=float, default=120.0)
    parser.add_argument("--unloaded-s", type=float, default=15.0)
    parser.add_argument("--long-tokens", type=int, default=64)
    parser.add_argument("--short-tokens", type=int, default=8)
    parser.add_argument("--port", type=int, default=18321)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a note stored with the results")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Path]:
    """Both modes, one gateway start each; the JSON and Markdown written."""
    machine = describe()
    logs = Path(tempfile.mkdtemp(prefix="llmgw-fair-logs-"))
    doc: dict[str, Any] = {"machine": machine, "args": {k: str(v) for k, v in
                                                        vars(args).items()}, "modes": {}}
    for fair in (False, True):
        with gateway(fair, args.seats, logs, args.port, args.reserve) as url:
            doc["modes"]["fair" if fair else "first_come"] = asyncio.run(
                measure(url, fair, args))
    doc["load_average_end"] = list(os.getloadavg())
    doc["logs"] = str(logs)
    stem = args.out / f"{date.today().isoformat()}-{machine['name']}-fair-share"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    stem.with_suffix(".md").write_text(render(doc))
    return [stem.with_suffix(".json"), stem.with_suffix(".md")]


def main() -> None:
    for path in run(options()):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
