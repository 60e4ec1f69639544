"""bench/defaults.py: one document from the three parts, and the headline that decides."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.defaults import _timed, headline, levels_part, render

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / f"2026-12-02-2cpu-xeon-{name}.json").read_text()))


def _timing(load: float) -> dict[str, Any]:
    return {"minutes": 1.0, "load_average_before": [load, 0, 0],
            "load_average_after": [load, 0, 0]}


def _doc() -> dict[str, Any]:
    """A run's document assembled from three committed single-part runs."""
    levels, peer, start = _load("speculation-levels"), _load("peer-llamacpp"), _load("startup")
    parts = {
        "levels": {k: levels[k] for k in ("rounds", "levels", "max_tokens", "configs",
                                          "results", "verdict", "turns")} | _timing(0.5),
        "peer": {"pairs": [{"profile": "cpu", "model": "smollm2-135m-instruct",
                            "section": peer["sections"]["peer"], "targets": peer["targets"],
                            "method": peer["method"]}]} | _timing(0.7),
        "startup": {"model": start["model"], "starts": start["starts"]} | _timing(0.9),
    }
    return {"date": "2026-12-05", "machine": levels["machine"], "note": "",
            "parts": parts, "load_average_end": [1.0, 1.0, 1.0]}


def test_headline_names_each_decision_with_its_measured_ratios() -> None:
    lines = "\n".join(headline(_doc()))
    assert "| EAGLE-3 (adaptive) vs compiled | 1: 1.32x, 4: 1.17x, 16: 1.08x |" in lines
    assert "**pays**: on by default" in lines
    assert ("| gateway (`cpu`) vs llama.cpp | 1 stream: 0.95x, 8 streams: 4.35x | >= 2.5x at 8 "
            "| met |") in lines
    assert "first start (empty cache): 258 s, restart (cache kept): 191 s" in lines


def test_when_llamacpp_is_within_the_goal_at_8_streams_then_the_headline_says_missed() -> None:
    doc = _doc()
    rows = doc["parts"]["peer"]["pairs"][0]["section"]["rows"]
    rows[1]["ratio"] = 2.4
    assert "8 streams: 2.40x | >= 2.5x at 8 | **missed** |" in "\n".join(headline(doc))


def test_when_speculation_loses_at_16_streams_then_the_verdict_is_not_pays() -> None:
    doc = copy.deepcopy(_doc())
    verdict = doc["parts"]["levels"]["verdict"]
    verdict.update(pays=False, reasons=["0.900x of compiled at 16 streams (< 0.97x)"])
    lines = "\n".join(headline(doc))
    assert "does not pay: 0.900x of compiled at 16 streams" in lines
    assert "**pays**" not in lines


def test_render_has_one_section_per_part_with_its_table_and_load() -> None:
    text = render(_doc())
    assert text.startswith("# The CPU profile's defaults, one run, 2cpu-xeon, 2026-12-05")
    for name, load in (("levels", "0.50"), ("peer", "0.70"), ("startup", "0.90")):
        assert f"## {name} (1.0 min, load average {load} before" in text
    assert "| 16 | compiled-eagle3-adaptive | 135.6 |" in text  # the levels table
    assert "### Gateway `cpu` (smollm2-135m-instruct) vs llama.cpp" in text
    assert "| 8 | 29.3 | 6.73 | 4.35 |" in text  # the peer table
    assert "| restart (cache kept) | cpu | False | **191 s** |" in text  # the start-up table
    assert text.count("\n# ") == 0  # the parts' own titles are dropped


def test_when_a_part_fails_then_the_run_records_its_error_and_keeps_the_others() -> None:
    def build_fails() -> dict[str, Any]:
        raise RuntimeError("llama-cpp-python build failed (1); see build.log")

    doc = _doc()
    doc["parts"]["peer"] = _timed("peer", build_fails)
    assert doc["parts"]["peer"]["error"] == (
        "RuntimeError: llama-cpp-python build failed (1); see build.log")
    lines = "\n".join(headline(doc))
    assert "| peer | failed: RuntimeError: llama-cpp-python build failed" in lines
    assert "**not measured**" in lines and "**pays**" in lines  # the levels part still counts
    assert "Failed: RuntimeError: llama-cpp-python build failed" in render(doc)


def test_levels_part_when_the_profile_has_no_eagle3_head_then_refuses_naming_it() -> None:
    with pytest.raises(ValueError, match="profile 'dev' serves smollm2-135m-instruct without"):
        levels_part("dev", "smollm2-135m-instruct", 1)
