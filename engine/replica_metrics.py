"""A vLLM replica's load and counters, read from its own Prometheus ``/metrics``.

The router ranks replicas by the requests each one runs and queues (``vllm:num_requests_
running`` + ``vllm:num_requests_waiting``, whoever sent them: other gateway pods too), and
``/admin/engines`` shows the model's totals over its replicas. vLLM's queue-time histogram
has buckets of its own, so remote engines report none here (read it from the replicas).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.protocol import EngineStats

_SCALARS = {  # EngineStats field -> vLLM metric family (counters without _total)
    "running": "vllm:num_requests_running",
    "waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc",
    "prompt_tokens_total": "vllm:prompt_tokens",
    "generation_tokens_total": "vllm:generation_tokens",
    "spec_drafts_total": "vllm:spec_decode_num_drafts",
    "spec_drafted_total": "vllm:spec_decode_num_draft_tokens",
    "spec_accepted_total": "vllm:spec_decode_num_accepted_tokens",
}
_PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos"


def stats_from_metrics(text: str) -> EngineStats:
    """The replica's counters from its ``/metrics`` text (a missing family counts 0)."""
    sums: dict[str, float] = {}
    positions: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket")):
                continue
            if family.name == _PER_POSITION:
                position = int(sample.labels.get("position", 0))
                positions[position] = positions.get(position, 0.0) + sample.value
            else:
                sums[family.name] = sums.get(family.name, 0.0) + sample.value
    values: dict[str, Any] = {field: sums.get(name, 0.0) for field, name in _SCALARS.items()}
    for field in values:
        if field != "kv_cache_usage":
            values[field] = int(values[field])
    return EngineStats(
        **values,
        unfinished_requests=values["running"] + values["waiting"],
        spec_accepted_per_position=tuple(int(positions[p]) for p in sorted(positions)),
    )


def merge_stats(parts: list[EngineStats]) -> EngineStats:
    """One model's stats over its replicas: counts add up, ratios are the mean."""
    if not parts:
        return EngineStats(0, 0, 0.0, 0, 0, 0)
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(EngineStats):
        merged[f.name] = _merge_field(f.name, [getattr(p, f.name) for p in parts])
    return EngineStats(**merged)


def _merge_field(name: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    averaged = name == "kv_cache_usage" or "window" in name  # ratios, not counts
    if isinstance(first, bool):
        return any(present)
    if isinstance(first, tuple):
        width = max(len(v) for v in present)
        columns = [[v[i] for v in present if i < len(v)] for i in range(width)]
        return tuple(sum(c) / len(c) if averaged else sum(c) for c in columns)
    return sum(present) / len(present) if averaged else sum(present)
