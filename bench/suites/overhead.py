"""Section 1: the gateway against vLLM's own server on the same engine settings."""

from __future__ import annotations

from typing import Any

from bench.plan import BenchContext, Probe, Results, Section, Suite, level_row
from bench.targets import TargetSpec

COLUMNS = (
    ("concurrency", "streams"), ("gateway_tok_s", "gateway tok/s"),
    ("engine_tok_s", "engine tok/s"), ("tok_s_ratio", "gateway/engine"),
    ("gateway_ttft_ms", "gateway TTFT p50 ms"), ("engine_ttft_ms", "engine TTFT p50 ms"),
    ("ttft_overhead_ms", "TTFT overhead ms"), ("itl_overhead_ms", "ITL p50 overhead ms"),
    ("gateway_share", "gateway share of ceiling"), ("status", "status"),
)


def _engine(ctx: BenchContext) -> TargetSpec:
    return TargetSpec("engine", ctx.model, label="engine-direct")


def probes(ctx: BenchContext) -> list[Probe]:
    levels = ctx.sizes.overhead_levels
    return ([ctx.probe(ctx.gateway(), "chat", c) for c in levels]
            + [ctx.probe(_engine(ctx), "chat", c) for c in levels])


def _diff(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def _row(ctx: BenchContext, results: Results, concurrency: int) -> dict[str, Any]:
    gw = level_row(ctx, ctx.model, results.get(ctx.probe(ctx.gateway(), "chat", concurrency)))
    en = level_row(ctx, ctx.model, results.get(ctx.probe(_engine(ctx), "chat", concurrency)))
    ratio = None
    if gw.get("tok_s") and en.get("tok_s"):
        ratio = round(gw["tok_s"] / en["tok_s"], 3)
    status = "ok" if gw["status"] == en["status"] == "ok" else (
        f"gateway: {gw['status']}; engine: {en['status']}")
    return {
        "concurrency": concurrency, "gateway_tok_s": gw.get("tok_s"),
        "engine_tok_s": en.get("tok_s"), "tok_s_ratio": ratio,
        "gateway_ttft_ms": gw.get("ttft_p50_ms"), "engine_ttft_ms": en.get("ttft_p50_ms"),
        "ttft_overhead_ms": _diff(gw.get("ttft_p50_ms"), en.get("ttft_p50_ms")),
        "itl_overhead_ms": _diff(gw.get("itl_p50_ms"), en.get("itl_p50_ms")),
        "gateway_share": gw.get("ceiling_share"), "status": status,
        "gateway": gw, "engine": en,
    }


def summarise(ctx: BenchContext, results: Results) -> Section:
    rows = tuple(_row(ctx, results, c) for c in ctx.sizes.overhead_levels)
    notes = (
        "engine = vLLM's own OpenAI server (python -m vllm.entrypoints.openai.api_server) on "
        "the same model folder and engine settings; the two never run at the same time.",
        "gateway/engine < 1 means the gateway is slower; overheads are gateway minus engine.",
    )
    return Section("overhead", TITLE, COLUMNS, rows, notes)


TITLE = "Gateway vs engine direct"
SUITE = Suite("overhead", TITLE, probes, summarise)
