"""``python -m bench.gateway_overhead.ab --before DIR --after DIR``: one change, measured.

Two source trees of the gateway (e.g. ``git archive`` snapshots of two commits) take turns,
``--rounds`` times each (before, after, before, after, ...), each a fresh ``cli serve`` in
the production configuration of ``bench.gateway_overhead`` (core 0) in front of the same
replica stub (core 1), driven through remote mode by the same workloads: streams back to
back (the per-token path) and one client's short requests (the per-request path). The CPU
figures (the gateway's CPU-seconds per 1k tokens and per request) are the steadier reading on
a shared machine; rounds that alternate let its drift fall on both sides alike. Writes
``bench/results/<date>-<machine>-<kind>.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench.gateway_overhead import servers
from bench.gateway_overhead.__main__ import POSTGRES, _database, _pin, measure
from bench.gateway_overhead.load import Level
from bench.gateway_overhead.workloads import Workload, replica_direct, through
from bench.machine import describe
from bench.report import save_run

WORKLOADS = (Workload("stream-c16-512", Level(16, 512, True, 8.0, 2.0), 0.0),
             Workload("requests-c1", Level(1, 16, False, 6.0, 1.0), 0.0))
KEYS = ("cpu_s_per_1k_tokens", "tokens_per_core_s", "requests_per_core_s", "tokens_per_s",
        "requests_per_s", "latency_p50_ms", "itl_p50_ms")


def _round(source: Path, replica: servers.Server, upstream: servers.Server, database: str,
           logs: Path) -> dict[str, Any]:
    gateway = servers.start_gateway(source, replica, upstream,
                                    f"postgresql+asyncpg://{POSTGRES}/{database}", 0, logs)
    try:
        arm = through("gateway remote", gateway.server, gateway.model, gateway.key, replica,
                      replica_direct(replica))
        return {work.key: measure(arm, work) for work in WORKLOADS}
    finally:
        gateway.server.stop()


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for work in WORKLOADS:
        for key in KEYS:
            values = [r[work.key].get(key) for r in rounds if r[work.key].get(key) is not None]
            if values:
                out[f"{work.key} {key}"] = round(statistics.median(values), 4)
    return out


def render(doc: dict[str, Any]) -> str:
    lines = [f"# {doc['title']} ({doc['date']})", "",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores_usable']} cores; load "
             f"average at start {doc['machine']['load_average_start']}, at end "
             f"{doc['load_average_end']}. {doc['note']}", "",
             f"Before: {doc['before']}; after: {doc['after']}; {doc['rounds']} rounds each, "
             "alternating; medians over rounds.", "",
             "| measure | before | after | after / before |", "|---|---|---|---|"]
    for key, before in doc["summary"]["before"].items():
        after = doc["summary"]["after"].get(key)
        ratio = round(after / before, 3) if after is not None and before else None
        lines.append(f"| {key} | {before} | {after} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--title", default="One change, before and after")
    parser.add_argument("--kind", default="gateway-overhead-ab")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    machine = describe()
    _pin(1)
    logs = Path(tempfile.mkdtemp(prefix="llmgw-ab-"))
    replica = servers.start_stub("vllm_replica", servers.REPLICA_KEY, 1, logs)
    upstream = servers.start_stub("openai_upstream", servers.UPSTREAM_KEY, 1, logs)
    database = f"llmgw_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_database(database, create=True))
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    try:
        for _ in range(args.rounds):
            for side in ("before", "after"):
                source = getattr(args, side).resolve()
                results[side].append(_round(source, replica, upstream, database, logs))
                print(side, _summary(results[side][-1:]), flush=True)
    finally:
        replica.stop()
        upstream.stop()
        asyncio.run(_database(database, create=False))
    doc = {"date": date.today().isoformat(), "machine": machine, "title": args.title,
           "note": args.note, "before": str(args.before), "after": str(args.after),
           "rounds": args.rounds, "results": results,
           "summary": {side: _summary(rounds) for side, rounds in results.items()},
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, args.kind, render).read_text())


if __name__ == "__main__":
    main()
