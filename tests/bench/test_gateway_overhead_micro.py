"""``bench.gateway_overhead.micro``: each section times the old and the new path in one
process and reports both."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.gateway_overhead import micro
from bench.targets import REPO


def test_micro_when_sections_run_then_each_reports_before_after_and_their_ratio(
    tmp_path: Path,
) -> None:
    # Any run module loads as the "before" side; the tree's own needs no git history (CI
    # clones are shallow; the committed results name the commit they compared).
    old_run = tmp_path / "run_before.py"
    old_run.write_text((REPO / "gateway" / "serving" / "run.py").read_text())
    results = {"keys": asyncio.run(micro.keys(1)),
               "stall": asyncio.run(micro.stall(old_run, 1)),
               "send": asyncio.run(micro.send(1)),
               "encode": asyncio.run(micro.encode(1)), "decode": asyncio.run(micro.decode(1))}
    for section, row in results.items():
        assert row["before_us"] > 0 and row["after_us"] > 0, section
        assert abs(row["after_over_before"] - row["after_us"] / row["before_us"]) < 0.01
    assert results["keys"]["after_us"] < results["keys"]["before_us"]  # no database at all
