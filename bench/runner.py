"""Runs the probes: one target at a time, each started once, warmed up, measured, stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from bench.load import Endpoint, LoadSpec, run_level
from bench.plan import BenchContext, Probe, ProbeResult, Suite
from bench.targets import LaunchOptions, RunningTarget, TargetError, TargetSpec, started

Progress = Callable[[str, int], None]  # (what is happening now, steps just finished)


@dataclass(frozen=True)
class RunOptions:
    launch: LaunchOptions
    external_gateway: Endpoint | None = None  # measure this gateway; start no engines
    # Starts the peer (e.g. llama.cpp's server) for its probes; None: the peer already runs.
    peer_launch: Callable[[], AbstractContextManager[RunningTarget]] | None = None


def group_probes(ctx: BenchContext, suites: tuple[Suite, ...]) -> dict[TargetSpec, list[Probe]]:
    """Every probe once, grouped by target: the base gateway first, engine direct next."""
    groups: dict[TargetSpec, list[Probe]] = {}
    for suite in suites:
        for probe in suite.probes(ctx):
            bucket = groups.setdefault(probe.target, [])
            if probe not in bucket:
                bucket.append(probe)
    for group in groups.values():
        group.sort(key=lambda p: (p.workload, p.concurrency))

    def order(target: TargetSpec) -> int:
        if target == ctx.gateway():
            return 0
        return {"engine": 1, "gateway": 2, "peer": 3}[target.kind]

    return dict(sorted(groups.items(), key=lambda item: order(item[0])))


def _speculation(before: dict[str, Any] | None,
                 after: dict[str, Any] | None) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    drafted = after.get("spec_drafted_total", 0) - before.get("spec_drafted_total", 0)
    accepted = after.get("spec_accepted_total", 0) - before.get("spec_accepted_total", 0)
    if drafted <= 0:
        return None
    return {"drafted": drafted, "accepted": accepted,
            "acceptance": round(accepted / drafted, 3)}


def _measure(target: RunningTarget, probe: Probe) -> ProbeResult:
    spec = LoadSpec(probe.workload, probe.concurrency, probe.requests, probe.max_tokens)
    before = target.engine_counters()
    stats = asyncio.run(run_level(target.endpoint, spec))
    return ProbeResult(stats=stats, speculation=_speculation(before, target.engine_counters()))


def _warm_up(target: RunningTarget) -> None:
    asyncio.run(run_level(target.endpoint, LoadSpec("chat", 1, 1, 8)))


@contextmanager
def _reach(spec: TargetSpec, ctx: BenchContext, options: RunOptions) -> Iterator[RunningTarget]:
    if spec.kind == "peer" and options.peer_launch is not None:
        with options.peer_launch() as running:
            yield running
    elif spec.kind == "peer":
        assert ctx.peer is not None
        yield RunningTarget(ctx.peer, None, None, None)
    elif options.external_gateway is not None:
        if spec != ctx.gateway():
            raise TargetError("skipped: --gateway-url measures a running gateway; "
                              "this run starts no engines")
        external = options.external_gateway
        admin = external.v1_url.removesuffix("/v1") + "/admin/engines"
        yield RunningTarget(external, None, None, admin)
    else:
        with started(spec, options.launch) as running:
            yield running


def execute(ctx: BenchContext, suites: tuple[Suite, ...], options: RunOptions,
            progress: Progress) -> tuple[dict[Probe, ProbeResult], dict[str, Any]]:
    """Measure every probe; returns the results and, per target, how it started."""
    results: dict[Probe, ProbeResult] = {}
    targets: dict[str, Any] = {}
    for spec, probes in group_probes(ctx, suites).items():
        progress(f"starting {spec.name}", 0)
        try:
            with _reach(spec, ctx, options) as running:
                targets[spec.name] = {"kind": spec.kind, "model": spec.model,
                                      "url": running.endpoint.v1_url,
                                      "startup_s": running.startup_s}
                progress(f"{spec.name}: warm-up", 1)
                _warm_up(running)
                for probe in probes:
                    progress(f"{spec.name}: {probe.workload}, {probe.concurrency} streams", 0)
                    results[probe] = _measure(running, probe)
                    progress(f"{spec.name}: done", 1)
        except TargetError as exc:
            message = str(exc).splitlines()[0] if str(exc) else "failed"
            targets[spec.name] = {"kind": spec.kind, "model": spec.model, "error": str(exc)}
            for probe in probes:
                if probe not in results:
                    results[probe] = ProbeResult(error=f"{spec.name}: {message}")
            progress(f"{spec.name}: {message}", len(probes) + 1 - _done(probes, results))
    return results, targets


def _done(probes: list[Probe], results: dict[Probe, ProbeResult]) -> int:
    """Steps already reported for a failed target (its warm-up, then each measured probe)."""
    measured = sum(1 for p in probes if results[p].stats is not None)
    return measured + (1 if measured else 0)


def total_steps(groups: dict[TargetSpec, list[Probe]]) -> int:
    return sum(len(probes) + 1 for probes in groups.values())
