"""The arms (what the load generator talks to) and the workloads each one runs."""

from __future__ import annotations

from dataclasses import dataclass

from bench.gateway_overhead.load import Level, Target
from bench.gateway_overhead.servers import RELAY_MODEL, REPLICA_KEY, UPSTREAM_KEY, Server


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: the target, the process whose cost is measured, the stub
    behind it and the direct arm it is compared with (None: it is a direct arm)."""

    name: str
    target: Target
    server: Server
    stub: Server
    baseline: str | None


def replica_direct(replica: Server) -> Arm:
    target = Target(f"{replica.url}/inference/v1/generate", "vllm", api_key=REPLICA_KEY)
    return Arm("replica stub (direct)", target, replica, replica, None)


def upstream_direct(upstream: Server) -> Arm:
    target = Target(f"{upstream.url}/v1/chat/completions", "openai", api_key=UPSTREAM_KEY)
    return Arm("OpenAI stub (direct)", target, upstream, upstream, None)


def through(name: str, server: Server, model: str, key: str, stub: Server,
            baseline: Arm) -> Arm:
    target = Target(f"{server.url}/v1/chat/completions", "openai", model, key)
    return Arm(name, target, server, stub, baseline.name)


def relay(name: str, server: Server, key: str, upstream: Server, baseline: Arm) -> Arm:
    return through(name, server, RELAY_MODEL, key, upstream, baseline)


@dataclass(frozen=True)
class Workload:
    """A level at a stub rate (tokens/s per stream; 0: back to back)."""

    key: str
    level: Level
    rate: float
    memory: bool = False  # sample the target's resident memory with the streams open


@dataclass(frozen=True)
class Sizes:
    stream_levels: tuple[int, ...] = (1, 16, 64, 256)
    request_levels: tuple[int, ...] = (1, 16, 64, 256)
    rate: float = 50.0  # a GPU replica's per-stream decode rate for an 8B model, about
    stream_tokens: int = 64
    request_tokens: int = 16
    saturation_concurrency: int = 64
    saturation_tokens: int = 256
    memory_streams: int = 256
    duration_s: float = 6.0
    warmup_s: float = 1.5


def workloads(sizes: Sizes) -> list[Workload]:
    found = [Workload(f"requests-c{c}", Level(c, sizes.request_tokens, False, sizes.duration_s,
                                              sizes.warmup_s), 0.0)
             for c in sizes.request_levels]
    found += [Workload(f"stream-c{c}", Level(c, sizes.stream_tokens, True, sizes.duration_s,
                                             sizes.warmup_s), sizes.rate)
              for c in sizes.stream_levels]
    found.append(Workload("stream-saturation", Level(
        sizes.saturation_concurrency, sizes.saturation_tokens, True, sizes.duration_s,
        sizes.warmup_s), 0.0))
    # Slow streams (2 tokens/s), long enough to be open at the window's edges, where memory
    # is read with the count of streams open then (a loaded gateway admits 256 in seconds).
    warmup = sizes.warmup_s + 8
    memory_tokens = int(2 * (warmup + sizes.duration_s + 4))
    found.append(Workload("memory", Level(sizes.memory_streams, memory_tokens, True,
                                          sizes.duration_s, warmup), 2.0, True))
    return found
