"""Section 2: continuous batching, aggregate tokens/s as concurrent streams grow."""

from __future__ import annotations

from typing import Any

from bench.plan import BenchContext, Probe, Results, Section, Suite, level_row

COLUMNS = (
    ("concurrency", "streams"), ("tok_s", "aggregate tok/s"), ("speedup", "x vs 1 stream"),
    ("stream_tok_s", "tok/s per stream"), ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p90_ms", "TTFT p90 ms"), ("itl_p50_ms", "ITL p50 ms"),
    ("ceiling_share", "share of ceiling"), ("status", "status"),
)


def probes(ctx: BenchContext) -> list[Probe]:
    return [ctx.probe(ctx.gateway(), "chat", c) for c in ctx.sizes.batching_levels]


def summarise(ctx: BenchContext, results: Results) -> Section:
    rows: list[dict[str, Any]] = []
    base: float | None = None
    for concurrency in ctx.sizes.batching_levels:
        row = level_row(ctx, ctx.model, results.get(ctx.probe(ctx.gateway(), "chat",
                                                              concurrency)))
        row["concurrency"] = concurrency
        if base is None and concurrency == 1:
            base = row.get("tok_s")
        row["speedup"] = round(row["tok_s"] / base, 2) if base and row.get("tok_s") else None
        rows.append(row)
    notes = (f"Through the gateway; each level sends max({ctx.sizes.min_requests}, streams) "
             "requests, a new one "
             "starting as soon as one ends.",)
    return Section("batching", TITLE, COLUMNS, tuple(rows), notes)


TITLE = "Continuous batching (gateway)"
SUITE = Suite("batching", TITLE, probes, summarise)
