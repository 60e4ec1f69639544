"""bench.replica_gate: a short run of the real processes (stand-in vLLM, both gate builds)."""

from __future__ import annotations

import argparse
import os

import pytest

from bench.replica_gate import BUILDS, measure, render

pytestmark = pytest.mark.slow


def test_a_short_run_measures_both_builds_and_renders_its_table() -> None:
    args = argparse.Namespace(rounds=2, requests=20, streams=1, chunks=10, interval_ms=2.0,
                              burst=500)
    results = measure(args)
    assert set(results) == set(BUILDS)
    for result in results.values():
        assert len(result["added_us_per_round"]["request"]) == 2
        assert result["latency"]["chunk"]["gate"]["median_us"] > 0
        assert result["burst"]["gate"]["chunks_per_s"] > 0
    doc = {"date": "2026-12-07", "parameters": vars(args), "results": results,
           "machine": {"cpu": "cpu", "cores_usable": 2, "git_commit": "abc",
                       "load_average_start": list(os.getloadavg())},
           "load_average_end": list(os.getloadavg())}
    table = render(doc)
    assert all(f"| {build} |" in table for build in BUILDS)
