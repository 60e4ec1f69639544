"""A replica's load and counters from vLLM's own /metrics (engine/replica_metrics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.protocol import EngineStats
from engine.replica_metrics import merge_stats, stats_from_metrics

# Scraped from a vLLM 0.32 CPU api_server (`llm-gateway engine serve`, n-gram speculation k=3)
# after three requests: one of 40 tokens, one n=2 of 5 tokens each.
REAL = Path(__file__).parent / "data" / "vllm-0.32-metrics.txt"


def test_a_real_vllm_scrape_gives_load_tokens_and_speculation() -> None:
    stats = stats_from_metrics(REAL.read_text())
    assert (stats.running, stats.waiting, stats.unfinished_requests) == (0, 0, 0)
    assert (stats.prompt_tokens_total, stats.generation_tokens_total) == (159, 50)
    assert (stats.spec_drafts_total, stats.spec_drafted_total, stats.spec_accepted_total) == (
        5, 15, 7)
    assert stats.spec_accepted_per_position == (3, 2, 2)


def test_load_is_running_plus_waiting() -> None:
    text = ('# TYPE vllm:num_requests_running gauge\n'
            'vllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
            '# TYPE vllm:num_requests_waiting gauge\n'
            'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0\n'
            '# TYPE vllm:kv_cache_usage_perc gauge\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n')
    stats = stats_from_metrics(text)
    assert (stats.running, stats.waiting, stats.unfinished_requests) == (3, 2, 5)
    assert stats.kv_cache_usage == 0.25


def test_merged_stats_add_counts_and_average_ratios() -> None:
    a = EngineStats(1, 2, 0.2, 10, 5, 3, spec_accepted_per_position=(1, 2))
    b = EngineStats(3, 0, 0.4, 5, 5, 3, spec_accepted_per_position=(1,))
    merged = merge_stats([a, b])
    assert (merged.running, merged.waiting, merged.prompt_tokens_total) == (4, 2, 15)
    assert merged.kv_cache_usage == pytest.approx(0.3)
    assert merged.spec_accepted_per_position == (2, 2)
