"""``python -m bench.gateway_overhead``: the gateway's cost against the stubs, and LiteLLM's.

Arms, one at a time, on one machine: the replica stub alone (vLLM's protocol) and the
gateway in remote mode in front of it; the OpenAI stub alone, the gateway relaying to it,
and LiteLLM's proxy relaying to it. The gateway and LiteLLM run pinned to core 0
(``--target-core``), the stubs and this load generator to core 1 (``--load-core``), so the
target's CPU time is its own. Each arm runs every workload (bench/gateway_overhead/
workloads.py): short non-streamed requests at rising concurrency (requests/s, added
latency), streams at a GPU-like rate per stream (added TTFT and inter-token latency), streams
as fast as the stub sends (tokens/s per core of the target, CPU-seconds per 1k tokens), and
many slow open streams (memory per open stream). Writes
``bench/results/<date>-<machine>-gateway-overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench.gateway_overhead import servers
from bench.gateway_overhead.load import run_level
from bench.gateway_overhead.render import render
from bench.gateway_overhead.workloads import (
    Arm,
    Sizes,
    Workload,
    relay,
    replica_direct,
    through,
    upstream_direct,
    workloads,
)
from bench.machine import describe
from bench.report import save_run
from bench.targets import REPO

POSTGRES = os.environ.get("LLMGW_TEST_POSTGRES", "postgres@127.0.0.1:5432")
LITELLM_DB = ("not run: LiteLLM's database mode (virtual keys, PostgreSQL spend tracking) "
              "needs `prisma generate`, which downloads Prisma's query-engine binary from "
              "binaries.prisma.sh; that host is unreachable from this machine and no PyPI or "
              "npm package ships the binary")


def measure(arm: Arm, work: Workload) -> dict[str, Any]:
    servers.set_rate(arm.stub, work.rate)
    cpu: dict[str, float] = {}
    before = arm.server.rss_bytes()
    memory: list[tuple[int, int]] = []  # (open streams, resident bytes) at the window's edges

    def at_window(edge: str, open_streams: int) -> None:
        cpu[edge] = arm.server.cpu_seconds()
        if work.memory:
            memory.append((open_streams, arm.server.rss_bytes()))

    result = asyncio.run(run_level(arm.target, work.level, at_window))
    used = cpu["end"] - cpu["start"]
    window = work.level.duration_s
    result.update(rate_per_stream=work.rate, target_cpu_s=round(used, 3),
                  target_cpu_util=round(used / window, 3),
                  load_average=list(os.getloadavg()))
    if result["tokens_per_s"] and used > 0:
        result["cpu_s_per_1k_tokens"] = round(used / (result["tokens_per_s"] * window / 1000), 4)
        result["tokens_per_core_s"] = round(result["tokens_per_s"] * window / used)
    if result["requests_per_s"] and used > 0:
        result["requests_per_core_s"] = round(result["requests_per_s"] * window / used, 1)
    if memory and max(memory)[0] > 0:
        streams, rss = max(memory)  # the edge with the most streams open
        result.update(open_streams=streams, rss_mib=round(rss / 2**20, 1),
                      rss_before_mib=round(before / 2**20, 1),
                      kib_per_open_stream=round((rss - before) / 1024 / streams, 1))
    return result


def run_arm(arm: Arm, plan: list[Workload], progress: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for work in plan:
        if work.memory and arm.baseline is None:
            continue  # a stub's own memory is not what is measured
        started = time.monotonic()
        results[work.key] = measure(arm, work)
        if progress:
            row = results[work.key]
            print(f"{arm.name:28} {work.key:18} {row['requests_per_s']:8} req/s "
                  f"{row['tokens_per_s']:9} tok/s ttft50 {row['ttft_p50_ms']} "
                  f"itl99 {row['itl_p99_ms']} lat50 {row['latency_p50_ms']} "
                  f"cpu {row['target_cpu_util']} err {row['errors']} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
    return results


async def _database(name: str, create: bool) -> None:
    import asyncpg  # type: ignore[import-untyped]

    admin = await asyncpg.connect(f"postgresql://{POSTGRES}/postgres")
    try:
        if create:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _pin(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def run(args: argparse.Namespace, sizes: Sizes, logs: Path) -> dict[str, Any]:
    plan, arms_done = workloads(sizes), {}
    replica = servers.start_stub("vllm_replica", servers.REPLICA_KEY, args.load_core, logs)
    upstream = servers.start_stub("openai_upstream", servers.UPSTREAM_KEY, args.load_core, logs)
    database = f"llmgw_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_database(database, create=True))
    started: list[servers.Server] = [replica, upstream]
    try:
        direct_r, direct_u = replica_direct(replica), upstream_direct(upstream)
        for arm in (direct_r, direct_u):
            arms_done[arm.name] = run_arm(arm, plan)
        if "gateway" in args.arms:
            gateway = servers.start_gateway(
                REPO, replica, upstream, f"postgresql+asyncpg://{POSTGRES}/{database}",
                args.target_core, logs)
            started.append(gateway.server)
            for arm in (through("gateway remote", gateway.server, gateway.model, gateway.key,
                                replica, direct_r),
                        relay("gateway relay", gateway.server, gateway.key, upstream,
                              direct_u)):
                arms_done[arm.name] = run_arm(arm, plan)
            gateway.server.stop()
        if "litellm" in args.arms:
            litellm, master = servers.start_litellm(upstream, args.target_core, logs)
            started.append(litellm)
            arm = relay("LiteLLM (no database)", litellm, master, upstream, direct_u)
            arms_done[arm.name] = run_arm(arm, plan)
            litellm.stop()
    finally:
        for server in started:
            server.stop()
        asyncio.run(_database(database, create=False))
    return arms_done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="gateway,litellm")
    parser.add_argument("--target-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--duration", type=float, default=Sizes.duration_s)
    parser.add_argument("--rate", type=float, default=Sizes.rate)
    parser.add_argument("--stream-levels", default="1,16,64,256")
    parser.add_argument("--request-levels", default="1,16,64,256")
    parser.add_argument("--memory-streams", type=int, default=Sizes.memory_streams)
    parser.add_argument("--note", default="")
    parser.add_argument("--kind", default="gateway-overhead")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        args.target_core = args.load_core = None
    sizes = Sizes(stream_levels=tuple(int(c) for c in args.stream_levels.split(",")),
                  request_levels=tuple(int(c) for c in args.request_levels.split(",")),
                  rate=args.rate, memory_streams=args.memory_streams,
                  duration_s=args.duration)
    machine = describe()  # before pinning: the machine's cores, not this process's one
    _pin(args.load_core)
    doc: dict[str, Any] = {"date": date.today().isoformat(), "machine": machine,
                           "note": args.note, "sizes": sizes.__dict__,
                           "cores": {"target": args.target_core, "stubs_and_load": args.load_core},
                           "litellm_database_mode": LITELLM_DB}
    logs = Path(tempfile.mkdtemp(prefix="llmgw-overhead-"))
    doc["arms"] = run(args, sizes, logs)
    doc["load_average_end"] = list(os.getloadavg())
    print(save_run(doc, args.kind, render).read_text())
    print(f"server logs in {logs}")


if __name__ == "__main__":
    main()
