"""Soaks: 200 streaming clients for 60 s on the real engine, a higher rate on the gateway
alone (a gateway process around the fake engine). No errors but intended 429s; the
gateway's RSS flat; p50/p99 recorded under bench/results/ (never asserted).

RSS bound: the median of the last quarter of the run may exceed the first quarter's
(after a 5 s warm-up) by < 25%. Python's allocator keeps arenas at their peak, so memory
plateaus once concurrency is reached; a per-request leak grows with the thousands of
requests served and shows up as steady growth well past a quarter. The bound is generous
because a shared, loaded machine makes RSS noisy.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from bench.reliability import (
    RESULTS,
    SoakPlan,
    SoakResult,
    rss_growth,
    run_soak,
    summary,
    write_results,
)
from tests.conftest import ADMIN_KEY, MODEL, LiveGateway
from tests.gateway.fake_gateway_process import start_fake_gateway
from tests.gateway.metered import ADMIN

RSS_GROWTH_BOUND = 0.25


def _assert_clean(result: SoakResult, *, allow_429: bool) -> None:
    assert result.requests > 0
    assert result.unexpected() == 0, (dict(result.statuses), result.failures[:5])
    if not allow_429:
        assert result.statuses.get("429", 0) == 0
    assert result.statuses["200"] > 0


async def _both(main: SoakPlan, throttled: SoakPlan) -> tuple[SoakResult, SoakResult]:
    return await asyncio.gather(run_soak(main), run_soak(throttled))


def _results_folder(tmp_path: Path) -> Path:
    """bench/results/ only on request (LLMGW_WRITE_BENCH=1): a CI run leaves the tree clean."""
    return RESULTS if os.environ.get("LLMGW_WRITE_BENCH") else tmp_path


@pytest.mark.slow
def test_soak_gateway_alone_when_many_streams_then_no_errors_and_flat_rss(
    tmp_path: Path,
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    process, base = start_fake_gateway(database, tmp_path / "gateway.log", 0.005)
    try:
        limited = httpx.post(f"{base}/admin/keys", headers=ADMIN,
                             json={"tenant": "throttled", "rpm": 2})
        assert limited.status_code == 201
        main = SoakPlan(base, ADMIN_KEY, MODEL, concurrency=200, duration_s=45,
                        max_tokens=16, pid=process.pid)
        throttled = SoakPlan(base, limited.json()["key"], MODEL, concurrency=4,
                             duration_s=45, max_tokens=4)
        result, limited_result = asyncio.run(_both(main, throttled))
    finally:
        process.terminate()
        process.wait(timeout=60)
    write_results(summary("fake-engine-200-clients", main, result), _results_folder(tmp_path))
    _assert_clean(result, allow_429=False)
    _assert_clean(limited_result, allow_429=True)
    assert limited_result.statuses["429"] > 0  # the intended ones
    assert rss_growth(result.rss_mib) < RSS_GROWTH_BOUND, result.rss_mib


@pytest.mark.engine
@pytest.mark.slow
def test_soak_live_engine_when_200_streams_for_60_s_then_no_errors_and_flat_rss(
    live_gateway: LiveGateway, tmp_path: Path,
) -> None:
    plan = SoakPlan(live_gateway.base_url, live_gateway.admin_key, live_gateway.model,
                    concurrency=200, duration_s=60, max_tokens=8,
                    pid=live_gateway.process.pid)
    result = asyncio.run(run_soak(plan))
    write_results(summary("vllm-200-clients", plan, result), _results_folder(tmp_path))
    _assert_clean(result, allow_429=False)
    assert rss_growth(result.rss_mib) < RSS_GROWTH_BOUND, result.rss_mib
    ready = httpx.get(f"{live_gateway.base_url}/ready", timeout=10)
    assert ready.status_code == 200  # still serving after the soak
