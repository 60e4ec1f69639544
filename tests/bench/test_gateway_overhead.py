"""The gateway-overhead bench's load generator against the stubs, and its comparisons."""

from __future__ import annotations

import pytest

from bench.gateway_overhead.load import Level, Target, run_level
from bench.gateway_overhead.render import headline, render
from tests.bench.stub_processes import REPLICA_KEY, UPSTREAM_KEY


async def test_load_on_the_replica_stub_then_every_stream_brings_its_tokens(
    replica_url: str,
) -> None:
    target = Target(f"{replica_url}/inference/v1/generate", "vllm", api_key=REPLICA_KEY)
    edges: list[str] = []
    result = await run_level(target, Level(3, 12, True, duration_s=0.5, warmup_s=0.1),
                             lambda edge, _open: edges.append(edge))
    assert edges == ["start", "end"]
    assert result["errors"] == 0 and result["requests_measured"] > 0
    assert result["tokens_per_request"] == [12]
    assert result["ttft_p50_ms"] is not None and result["itl_p50_ms"] is not None


@pytest.mark.parametrize("stream", [True, False])
async def test_load_on_the_openai_stub_then_every_answer_is_whole(
    upstream_url: str, stream: bool,
) -> None:
    target = Target(f"{upstream_url}/v1/chat/completions", "openai", api_key=UPSTREAM_KEY)
    result = await run_level(target, Level(2, 7, stream, duration_s=0.4, warmup_s=0.1))
    assert result["errors"] == 0 and result["tokens_per_request"] == [7]
    assert (result["ttft_p50_ms"] is None) is not stream


async def test_load_with_a_wrong_key_then_errors_are_counted(upstream_url: str) -> None:
    target = Target(f"{upstream_url}/v1/chat/completions", "openai", api_key="wrong")
    result = await run_level(target, Level(1, 4, True, duration_s=0.2, warmup_s=0.0))
    assert result["errors"] > 0 and "401" in result["error_sample"]
    assert result["requests_measured"] == 0


def _row(**values: float) -> dict[str, float]:
    return {"requests_per_s": 1.0, "tokens_per_s": 1.0, **values}


def test_headline_is_each_arm_minus_the_stub_it_fronts() -> None:
    doc = {"date": "2026-12-07", "note": "", "sizes": {}, "litellm_database_mode": "not run",
           "cores": {"target": 0, "stubs_and_load": 1},
           "machine": {"cpu": "x", "cores_usable": 2, "load_average_start": [1, 1, 1]},
           "arms": {
               "replica stub (direct)": {"requests-c1": _row(latency_p50_ms=1.0),
                                         "stream-c4": _row(ttft_p50_ms=2.0, itl_p99_ms=20.0),
                                         "stream-saturation": _row()},
               "gateway remote": {"requests-c1": _row(latency_p50_ms=3.5),
                                  "stream-c4": _row(ttft_p50_ms=2.5, itl_p99_ms=26.0),
                                  "stream-saturation": _row(tokens_per_core_s=900),
                                  "memory": {"kib_per_open_stream": 40.0}},
           }}
    rows = headline(doc)
    assert list(rows) == ["gateway remote"]
    gateway = rows["gateway remote"]
    assert gateway["added_latency_p50_ms (1 client, 16 tokens)"] == 2.5
    assert gateway["added TTFT p50 / p99 ms at stream-c4"] == (0.5, None)
    assert gateway["added ITL p50 / p99 ms at stream-c4"] == (None, 6.0)
    assert gateway["tok per core-s, back to back"] == 900
    assert gateway["KiB per open stream"] == 40.0
    assert "| added_latency_p50_ms (1 client, 16 tokens) | 2.5 |" in render(doc)
