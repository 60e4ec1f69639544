"""One benchmark run, start to finish: bandwidth, probes, sections, result files."""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import bandwidth, machine, report
from bench.load import Endpoint
from bench.plan import FULL, QUICK, BenchContext, Ceiling, Sizes, Suite, model_step_bytes
from bench.runner import Progress, RunOptions, execute, group_probes, total_steps
from bench.suites import ALL
from gateway.settings import Settings


@dataclass(frozen=True)
class BenchRequest:
    """Everything the command line decided."""

    settings: Settings
    model: str
    quick: bool
    sections: tuple[str, ...]
    options: RunOptions
    out_dir: Path
    peer: Endpoint | None = None
    draft_path: Path | None = None
    note: str = ""
    max_tokens: int | None = None  # overrides the sizes' max_tokens
    levels: tuple[int, ...] = ()  # overrides every section's concurrency levels
    kind: str = ""  # result files <date>-<machine>-<kind>.*, apart from full runs

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be positive")
        if self.kind and not self.kind.replace("-", "").isalnum():
            raise ValueError("kind: letters, digits and dashes only")
        if any(level < 1 for level in self.levels):
            raise ValueError("levels must be positive")
        if self.model not in self.settings.models:
            raise ValueError(f"model {self.model!r} is not in configs/models.yaml")
        unknown = set(self.sections) - {suite.name for suite in ALL}
        if unknown:
            raise ValueError(f"unknown sections: {sorted(unknown)}")

    @property
    def sizes(self) -> Sizes:
        sizes = QUICK if self.quick else FULL
        if self.max_tokens is not None:
            sizes = replace(sizes, max_tokens=self.max_tokens)
        if self.levels:
            sizes = replace(sizes, overhead_levels=self.levels, batching_levels=self.levels,
                            variant_levels=self.levels, peer_levels=self.levels)
        return sizes

    def suites(self) -> tuple[Suite, ...]:
        return tuple(suite for suite in ALL if suite.name in self.sections)


def _draft(request: BenchRequest) -> Path | None:
    """--draft, else a draft the settings name, else the newest installed one
    (``llm-gateway draft install`` writes ``<model_cache>/<model>-draft-<n>l``)."""
    if request.draft_path is not None:
        return request.draft_path
    cache = request.settings.model_cache
    own = request.settings.models[request.model].speculation.draft_path
    if own is not None:
        return own if own.is_absolute() else cache / own
    installed = [p for p in cache.glob(f"{request.model}-draft-*") if (p / "config.json").is_file()]
    return max(installed, key=lambda p: p.stat().st_mtime) if installed else None


def prepare(request: BenchRequest) -> tuple[BenchContext, int]:
    """Measure the bandwidth (before any engine runs) and plan the probes."""
    measured = bandwidth.measure(request.sizes.bandwidth_mb)
    ceiling = Ceiling(measured, model_step_bytes(request.settings))
    ctx = BenchContext(request.settings, request.model, request.sizes, ceiling,
                       peer=request.peer, draft_path=_draft(request))
    return ctx, total_steps(group_probes(ctx, request.suites()))


def _settings_json(request: BenchRequest, ctx: BenchContext) -> dict[str, Any]:
    return {
        "model": request.model, "profile": request.options.launch.profile,
        "kv_cache_gib": request.options.launch.kv_cache_gib, "temperature": 0.0,
        "sizes": asdict(ctx.sizes),
        "external_gateway": (request.options.external_gateway.v1_url
                             if request.options.external_gateway else None),
        "draft_path": str(ctx.draft_path) if ctx.draft_path else None,
    }


def run(request: BenchRequest, ctx: BenchContext, progress: Progress) -> tuple[dict[str, Any],
                                                                               list[Path]]:
    """Measure, summarise and write; returns the document and the files written."""
    started = time.monotonic()
    host = machine.describe()
    results, targets = execute(ctx, request.suites(), request.options, progress)
    sections = {suite.name: report.section_json(suite.summarise(ctx, results))
                for suite in request.suites()}
    date = datetime.date.today().isoformat()
    doc: dict[str, Any] = {
        "schema": 1, "date": date, "finished_at": datetime.datetime.now().isoformat(" ", "seconds"),
        "quick": request.quick, "note": request.note, "machine": host,
        "load_average_end": list(os.getloadavg()),
        "duration_s": round(time.monotonic() - started, 1),
        "settings": _settings_json(request, ctx),
        "method": [m.format(max_tokens=ctx.sizes.max_tokens) for m in report.METHOD],
        "targets": targets, "sections": sections,
    }
    if request.kind:
        doc["kind"] = request.kind
    stem = f"{date}-{host['name']}" + (f"-{request.kind}" if request.kind else "")
    files = report.write(doc, request.out_dir, stem)
    return doc, files
