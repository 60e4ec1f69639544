"""What a benchmark run measures: sizes, probes (one load level on one target), sections."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bandwidth import Bandwidth, bytes_per_step, ceiling_tok_s
from bench.load import Endpoint, LevelStats
from bench.prompts import Workload
from bench.targets import TargetSpec
from gateway.settings import Settings


@dataclass(frozen=True)
class Sizes:
    max_tokens: int
    overhead_levels: tuple[int, ...]
    batching_levels: tuple[int, ...]
    variant_levels: tuple[int, ...]
    peer_levels: tuple[int, ...]
    min_requests: int
    bandwidth_mb: int

    def requests(self, concurrency: int) -> int:
        return max(self.min_requests, concurrency)


FULL = Sizes(max_tokens=128, overhead_levels=(1, 4, 16, 64),
             batching_levels=(1, 2, 4, 8, 16, 32), variant_levels=(1, 16),
             peer_levels=(1, 8), min_requests=3, bandwidth_mb=256)
QUICK = Sizes(max_tokens=16, overhead_levels=(1, 2), batching_levels=(1, 2),
              variant_levels=(1, 2), peer_levels=(1, 2), min_requests=2, bandwidth_mb=32)


@dataclass(frozen=True)
class Probe:
    target: TargetSpec
    workload: Workload
    concurrency: int
    requests: int
    max_tokens: int


@dataclass(frozen=True)
class ProbeResult:
    stats: LevelStats | None = None
    error: str | None = None
    speculation: Mapping[str, float] | None = None  # drafted, accepted, acceptance


@dataclass(frozen=True)
class Ceiling:
    """Measured bandwidth and each served model's weight bytes per decode step."""

    bandwidth: Bandwidth
    step_bytes: Mapping[str, int]

    def tok_s(self, model: str) -> float | None:
        step = self.step_bytes.get(model)
        return None if step is None else ceiling_tok_s(self.bandwidth.best_gbs, step)

    def share(self, model: str, stats: LevelStats | None) -> float | None:
        """Decode steps per second (tok/s per stream) as a fraction of the ceiling."""
        ceiling = self.tok_s(model)
        if ceiling is None or stats is None or stats.tok_s <= 0:
            return None
        return round(stats.tok_s / stats.concurrency / ceiling, 3)


def model_step_bytes(settings: Settings) -> dict[str, int]:
    out = {}
    for name, model in settings.models.items():
        try:
            out[name] = bytes_per_step(settings.model_path(name), model.dtype)
        except FileNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class BenchContext:
    settings: Settings
    model: str
    sizes: Sizes
    ceiling: Ceiling
    peer: Endpoint | None = None
    draft_path: Path | None = None

    def probe(self, target: TargetSpec, workload: Workload, concurrency: int) -> Probe:
        return Probe(target, workload, concurrency, self.sizes.requests(concurrency),
                     self.sizes.max_tokens)

    def gateway(self) -> TargetSpec:
        return TargetSpec("gateway", self.model, label="gateway")

    def prepared(self, model: str) -> bool:
        return (self.settings.model_path(model) / "config.json").is_file()


@dataclass(frozen=True)
class Section:
    """One table of the report: ``columns`` maps each row key to its header."""

    name: str
    title: str
    columns: tuple[tuple[str, str], ...]
    rows: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


Results = Mapping[Probe, ProbeResult]


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    probes: Callable[[BenchContext], list[Probe]]
    summarise: Callable[[BenchContext, Results], Section]


def level_row(ctx: BenchContext, model: str, result: ProbeResult | None) -> dict[str, Any]:
    """The usual columns for one probe's numbers (or why there are none)."""
    if result is None or result.stats is None:
        return {"status": (result.error if result else None) or "not measured"}
    stats = result.stats
    row: dict[str, Any] = {
        "status": "ok" if stats.errors == 0 else f"{stats.errors} errors: {stats.first_error}",
        "tok_s": stats.tok_s, "stream_tok_s": stats.stream_tok_s,
        "ttft_p50_ms": stats.ttft_p50_ms, "ttft_p90_ms": stats.ttft_p90_ms,
        "itl_p50_ms": stats.itl_p50_ms, "mean_tokens": stats.mean_completion_tokens,
        "requests": stats.requests, "ceiling_share": ctx.ceiling.share(model, stats),
    }
    if result.speculation is not None:
        row["acceptance"] = result.speculation.get("acceptance")
    return row
