"""The hostile-client bench's own logic: bodies at the limits, percentiles, gaps, the
verdict, variants and the result table (the bench itself runs against a real gateway)."""

from __future__ import annotations

import json

import pytest

from bench.hostile import Variant, hostile_bodies, render
from bench.hostile_load import Phase, gaps, percentile, verdict
from gateway.openai.bodies import ChatCompletionRequest
from gateway.settings import LimitSettings

LIMITS = LimitSettings(max_body_bytes=200_000, max_tools=16, max_messages=32,
                       max_prompt_chars=50_000)


def test_bodies_when_built_then_each_is_a_valid_chat_at_the_limits() -> None:
    bodies = hostile_bodies(LIMITS)
    assert set(bodies) == {"schema", "schema_over", "tools", "messages"}
    for body in bodies.values():
        assert len(body) <= LIMITS.max_body_bytes * 0.9
        ChatCompletionRequest.model_validate_json(body)  # what the gateway parses

    def schema_size(kind: str) -> int:
        schema = json.loads(bodies[kind])["response_format"]["json_schema"]["schema"]
        return len(json.dumps(schema, separators=(",", ":")))

    assert LIMITS.max_schema_bytes - 300 < schema_size("schema") <= LIMITS.max_schema_bytes
    assert schema_size("schema_over") > LIMITS.max_body_bytes * 0.85  # filled, not tiny
    tools = json.loads(bodies["tools"])["tools"]
    assert len(tools) == LIMITS.max_tools
    messages = json.loads(bodies["messages"])["messages"]
    assert len(messages) == LIMITS.max_messages
    assert LIMITS.max_prompt_chars * 0.9 < sum(len(m["content"]) for m in messages) \
        <= LIMITS.max_prompt_chars


def test_percentile_when_values_then_nearest_rank_and_none_when_empty() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0 and percentile([], 0.5) is None


def test_gaps_when_chunks_arrive_then_differences_without_the_first_wait() -> None:
    assert gaps([10.0, 10.5, 10.75]) == [0.5, 0.25]
    assert gaps([1.0]) == [] and gaps([]) == []


def test_verdict_when_flood_within_twice_idle_then_met_else_missed() -> None:
    idle = {"health_p99_ms": 4.0, "gap_p99_ms": 50.0}
    assert verdict(idle, {"health_p99_ms": 8.0, "gap_p99_ms": 60.0}) == {
        "health_p99_ratio": 2.0, "gap_p99_ratio": 1.2, "meets_goal": True}
    assert not verdict(idle, {"health_p99_ms": 9.0, "gap_p99_ms": 60.0})["meets_goal"]
    assert not verdict(idle, {"health_p99_ms": None, "gap_p99_ms": 60.0})["meets_goal"]


def test_phase_summary_when_measured_then_milliseconds_and_counts() -> None:
    phase = Phase(health_s=[0.001, 0.002, 0.003], gaps_s=[0.04, 0.05, 0.06], streams=2)
    summary = phase.summary()
    assert (summary["health_p50_ms"], summary["gap_p99_ms"]) == (2.0, 60.0)
    assert (summary["health_samples"], summary["gap_samples"], summary["streams"]) == (3, 3, 2)


def test_variant_when_parsed_then_name_tree_and_executor() -> None:
    variant = Variant.parse("thread=.:thread")
    assert (variant.name, variant.executor) == ("thread", "thread") and variant.tree.is_dir()
    assert Variant.parse("before=/tmp/before").executor is None
    with pytest.raises(ValueError):
        Variant.parse("no-path")


def test_render_when_variants_measured_or_failed_then_one_row_each() -> None:
    summary = Phase([0.002], [0.05], 1).summary()
    doc = {"date": "2026-12-07", "note": "shared machine", "duration_s": 30.0,
           "concurrency": 6, "body_bytes": {"schema": 900_000},
           "load_average_end": [1.0, 1.0, 1.0],
           "machine": {"cpu": "cpu", "cores_usable": 2, "memory_gib": 24, "vllm": "0.32",
                       "git_commit": "abc", "load_average_start": [1.0, 1.0, 1.0]},
           "variants": [{"name": "process", "idle": summary, "executor": "process",
                         "hostile": {**summary, "hostile_statuses": {"400": 3}},
                         **verdict(summary, summary)},
                        {"name": "before", "error": "RuntimeError('no start')"}]}
    text = render(doc)
    assert "| process | 2 / 2 | 2 / 2 | 1x |" in text and "400: 3 | met |" in text
    assert "| before | failed: RuntimeError('no start') |" in text
    assert "**Note:** shared machine" in text and "schema 879 KiB" in text
