"""Section 6: the machine's measured memory bandwidth and each model's batch-1 ceiling."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.plan import BenchContext, Probe, Results, Section, Suite

COLUMNS = (
    ("model", "model"), ("weight_mb", "weights MB/step"), ("ceiling_tok_s", "ceiling tok/s"),
    ("best_tok_s", "measured 1-stream tok/s"), ("measured_by", "measured by"),
    ("ceiling_share", "share of ceiling"),
)


def probes(ctx: BenchContext) -> list[Probe]:
    del ctx
    return []


def _best_single_stream(model: str, results: Results) -> tuple[float | None, str | None]:
    best: tuple[float | None, str | None] = (None, None)
    for probe, result in results.items():
        if probe.target.model != model or probe.concurrency != 1 or result.stats is None:
            continue
        if probe.workload != "chat" or probe.target.kind == "peer":
            continue
        if best[0] is None or result.stats.tok_s > best[0]:
            best = (result.stats.tok_s, probe.target.name)
    return best


def summarise(ctx: BenchContext, results: Results) -> Section:
    rows: list[dict[str, Any]] = []
    for model, step in ctx.ceiling.step_bytes.items():
        ceiling = ctx.ceiling.tok_s(model)
        best, who = _best_single_stream(model, results)
        share = round(best / ceiling, 3) if best and ceiling else None
        rows.append({"model": model, "weight_mb": round(step / 1e6, 1),
                     "ceiling_tok_s": None if ceiling is None else round(ceiling, 1),
                     "best_tok_s": best, "measured_by": who, "ceiling_share": share})
    bw = ctx.ceiling.bandwidth
    notes = (
        f"Bandwidth (best of 5, {bw.buffer_mb} MB buffers): numpy copy {bw.numpy_copy_gbs} GB/s "
        f"(1 thread, read+write bytes), torch copy {bw.torch_copy_gbs} GB/s, torch sum "
        f"{bw.torch_read_gbs} GB/s ({bw.threads} threads); the ceiling uses the best, "
        f"{bw.best_gbs} GB/s.",
        "ceiling tok/s = bandwidth / weight bytes read per decode step; a batch shares one "
        "read per step, so 'share of ceiling' elsewhere is (tok/s per stream) / ceiling.",
    )
    return Section("ceiling", TITLE, COLUMNS, tuple(rows), notes,
                   {"bandwidth": dataclasses.asdict(bw), "best_gbs": bw.best_gbs})


TITLE = "Memory-bandwidth ceiling"
SUITE = Suite("ceiling", TITLE, probes, summarise)
