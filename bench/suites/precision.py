"""Section 4: weight precision (float32 / W8A8 / W4A16) of the same model."""

from __future__ import annotations

from typing import Any

from bench.plan import BenchContext, Probe, Results, Section, Suite, level_row
from bench.targets import TargetSpec

COLUMNS = (
    ("precision", "precision"), ("model", "model"), ("concurrency", "streams"),
    ("tok_s", "tok/s"), ("speedup", "x vs float32"), ("ttft_p50_ms", "TTFT p50 ms"),
    ("weight_mb", "weights MB/step"), ("ceiling_tok_s", "ceiling tok/s/stream"),
    ("ceiling_share", "share of ceiling"), ("status", "status"),
)
_SUFFIXES = (("W8A8", "-w8a8"), ("W4A16", "-w4a16"))


def variants(ctx: BenchContext) -> dict[str, TargetSpec | str]:
    """The base model plus each quantized sibling in configs/models.yaml, or why not."""
    dtype = ctx.settings.models[ctx.model].dtype
    out: dict[str, TargetSpec | str] = {dtype: ctx.gateway()}
    for label, suffix in _SUFFIXES:
        names = sorted(n for n in ctx.settings.models if n.startswith(ctx.model + suffix))
        if not names:
            out[label] = f"not available: no model {ctx.model}{suffix}* in configs/models.yaml"
        elif not ctx.prepared(names[0]):
            path = ctx.settings.model_path(names[0])
            out[label] = f"not available: {names[0]} is not prepared at {path}"
        else:
            out[label] = TargetSpec("gateway", names[0], label=f"gateway-{names[0]}")
    return out


def probes(ctx: BenchContext) -> list[Probe]:
    return [ctx.probe(target, "chat", c) for target in variants(ctx).values()
            if isinstance(target, TargetSpec) for c in ctx.sizes.variant_levels]


def _row(ctx: BenchContext, results: Results, target: TargetSpec | str,
         concurrency: int) -> dict[str, Any]:
    if isinstance(target, str):
        return {"status": target}
    row = level_row(ctx, target.model, results.get(ctx.probe(target, "chat", concurrency)))
    step = ctx.ceiling.step_bytes.get(target.model)
    ceiling = ctx.ceiling.tok_s(target.model)
    row["model"] = target.model
    row["weight_mb"] = None if step is None else round(step / 1e6, 1)
    row["ceiling_tok_s"] = None if ceiling is None else round(ceiling, 1)
    return row


def summarise(ctx: BenchContext, results: Results) -> Section:
    rows: list[dict[str, Any]] = []
    found = variants(ctx)
    baseline: dict[int, float] = {}
    for label, target in found.items():
        for concurrency in ctx.sizes.variant_levels:
            row = {"precision": label, "concurrency": concurrency,
                   **_row(ctx, results, target, concurrency)}
            tok_s = row.get("tok_s")
            if target == ctx.gateway():
                baseline[concurrency] = tok_s or 0.0
            base = baseline.get(concurrency)
            row["speedup"] = round(tok_s / base, 2) if base and tok_s else None
            rows.append(row)
    notes = (
        "Quantized variants are the models named <model>-w8a8 / <model>-w4a16* in "
        "configs/models.yaml, each served with its own configured dtype.",
        "weights MB/step: safetensors tensors, float tensors counted at the serving dtype.",
    )
    return Section("precision", TITLE, COLUMNS, tuple(rows), notes)


TITLE = "Weight precision"
SUITE = Suite("precision", TITLE, probes, summarise)
