"""``llm-gateway bench --quick``: the CI smoke test of the benchmark command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import build
from tests.conftest import ADMIN_KEY, REPO, LiveGateway

SECTIONS = ("overhead", "batching", "speculation", "precision", "peer", "ceiling")


def _result(out: Path) -> dict[str, Any]:
    files = sorted(out.glob("*.json"))
    assert len(files) == 1
    assert files[0].with_suffix(".md").is_file()
    doc: dict[str, Any] = json.loads(files[0].read_text())
    for key in ("date", "machine", "method", "settings", "sections", "targets", "plots"):
        assert key in doc
    assert doc["quick"] is True
    assert set(doc["sections"]) == set(SECTIONS)
    for body in doc["sections"].values():
        assert {"title", "columns", "rows", "notes"} <= set(body)
    for plot in doc["plots"]:
        assert (out / plot).is_file()
    return doc


def test_bench_quick_against_a_running_gateway_writes_json_markdown_and_plots(
    fake_gateway_url: str, tmp_path: Path,
) -> None:
    result = CliRunner().invoke(build(), [
        "bench", "--quick", "--gateway-url", fake_gateway_url, "--api-key", ADMIN_KEY,
        "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = _result(tmp_path)
    batching = doc["sections"]["batching"]["rows"]
    assert [row["concurrency"] for row in batching] == [1, 2]
    assert all(row["status"] == "ok" and row["tok_s"] > 0 for row in batching)
    overhead = doc["sections"]["overhead"]["rows"][0]
    assert overhead["gateway"]["status"] == "ok"
    assert "no engines" in overhead["engine"]["status"]  # engine direct is not started
    assert doc["sections"]["peer"]["rows"] == []
    assert doc["sections"]["ceiling"]["data"]["best_gbs"] > 0
    assert any(name.endswith("-throughput.png") for name in doc["plots"])


@pytest.mark.engine
def test_bench_quick_against_the_live_gateway_measures_real_tokens(
    live_gateway: LiveGateway, tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "cli", "bench", "--quick", "--gateway-url",
               live_gateway.base_url, "--api-key", ADMIN_KEY, "--model", live_gateway.model,
               "--profile", "test",  # the settings the live gateway serves (no speculation)
               "--sections", "overhead,batching,speculation,precision,peer,ceiling",
               "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = _result(tmp_path)
    rows = doc["sections"]["batching"]["rows"]
    assert all(row["status"] == "ok" for row in rows)
    assert all(0 < row["mean_tokens"] <= 16 for row in rows)  # from the usage chunk
    assert doc["settings"]["external_gateway"] == live_gateway.v1
    speculation = doc["sections"]["speculation"]["rows"]
    assert any(row["variant"] == "none" and row["status"] == "ok" for row in speculation)


def test_bench_fair_share_section_when_quick_then_its_own_run_with_small_sizes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from bench import fair_share

    runs: list[Any] = []

    def run(args: Any) -> list[Path]:  # the real one starts two gateways on the real engine
        runs.append(args)
        written = tmp_path / "fair.md"
        written.write_text("x")
        return [written]

    monkeypatch.setattr(fair_share, "run", run)
    result = CliRunner().invoke(build(), ["bench", "--quick", "--sections", "fair-share",
                                          "--out", str(tmp_path), "--note", "busy"])
    assert result.exit_code == 0, result.output
    assert len(runs) == 1 and "fair.md" in result.output
    args = runs[0]
    assert (args.seats, args.reserve, args.phase_s, args.out, args.note) == (
        4, 0.25, 12.0, tmp_path, "busy")
    assert not list(tmp_path.glob("*.json"))  # no probe sections were run
