"""Section 3: speculative decoding (none / ngram / trained draft) at batch 1 and 16."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast, get_args

from bench.plan import BenchContext, Probe, Results, Section, Suite, level_row
from bench.prompts import Workload
from bench.targets import TargetSpec
from draft_models.kinds import DRAFT_MODEL, EAGLE3, installed_kind
from engine.config import SpeculationConfig, SpeculationMethod

COLUMNS = (
    ("variant", "speculation"), ("workload", "prompts"), ("concurrency", "streams"),
    ("tok_s", "tok/s"), ("speedup", "x vs none"), ("acceptance", "acceptance"),
    ("ttft_p50_ms", "TTFT p50 ms"), ("ceiling_share", "share of ceiling"), ("status", "status"),
)
WORKLOADS: tuple[Workload, ...] = ("chat", "rewrite")


def _draft_method(path: Path) -> SpeculationMethod:
    """The method that serves the draft at ``path``: its kind when ``draft install`` wrote
    it (the folder keeps the card), else read from a published head's config."""
    kind = installed_kind(path)
    name = kind.name if kind is not None else _published_method(path)
    if name not in get_args(SpeculationMethod):
        raise ValueError(f"{path}: draft kind {name!r} is no speculation method")
    return cast(SpeculationMethod, name)


def _published_method(path: Path) -> str:
    config_file = path / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        kind = str(config.get("speculators_model_type", "")) + str(config.get("architectures"))
        if "eagle3" in kind.lower():
            return EAGLE3.name
    return DRAFT_MODEL.name


def variants(ctx: BenchContext) -> dict[str, TargetSpec | str]:
    """Each variant's target, or why it is not available."""
    configured = ctx.settings.models[ctx.model].speculation
    none = (ctx.gateway() if configured.method == "none" else
            TargetSpec("gateway", ctx.model, SpeculationConfig("none"), "gateway-spec-none"))
    ngram = SpeculationConfig("ngram", configured.num_speculative_tokens,
                              configured.prompt_lookup_min, configured.prompt_lookup_max)
    out: dict[str, TargetSpec | str] = {
        "none": none, "ngram": TargetSpec("gateway", ctx.model, ngram, "gateway-spec-ngram"),
    }
    draft = ctx.draft_path
    if draft is None:
        out["draft"] = "not available: no trained draft configured (pass --draft PATH)"
    elif not (draft / "config.json").is_file():
        out["draft"] = f"not available: no draft model prepared at {draft}"
    else:
        config = SpeculationConfig(_draft_method(draft), configured.num_speculative_tokens,
                                   draft_path=draft)
        out["draft"] = TargetSpec("gateway", ctx.model, config, "gateway-spec-draft")
    return out


def probes(ctx: BenchContext) -> list[Probe]:
    return [ctx.probe(target, workload, c)
            for target in variants(ctx).values() if isinstance(target, TargetSpec)
            for workload in WORKLOADS for c in ctx.sizes.variant_levels]


def summarise(ctx: BenchContext, results: Results) -> Section:
    rows: list[dict[str, Any]] = []
    found = variants(ctx)
    baseline: dict[tuple[str, int], float] = {}
    for name, target in found.items():
        for workload in WORKLOADS:
            for concurrency in ctx.sizes.variant_levels:
                key = {"variant": name, "workload": workload, "concurrency": concurrency}
                if isinstance(target, str):
                    rows.append({**key, "status": target})
                    continue
                row = level_row(ctx, ctx.model, results.get(ctx.probe(target, workload,
                                                                      concurrency)))
                if name == "none" and row.get("tok_s"):
                    baseline[(workload, concurrency)] = row["tok_s"]
                base = baseline.get((workload, concurrency))
                tok_s = row.get("tok_s")
                row["speedup"] = round(tok_s / base, 2) if base and tok_s else None
                rows.append({**key, **row})
    notes = (
        "Through the gateway, same model and settings; only the speculation setting changes.",
        "acceptance = accepted / drafted tokens, from the engine's own counters "
        "(/admin/engines) over that level.",
        "chat prompts ask for long essays; rewrite prompts ask to repeat a given text "
        "(the case prompt lookup is built for).",
    )
    return Section("speculation", TITLE, COLUMNS, tuple(rows), notes)


TITLE = "Speculative decoding"
SUITE = Suite("speculation", TITLE, probes, summarise)
