"""``bench.report.save_run``: each run's JSON and Markdown, never over a committed one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report


def test_save_run_when_same_day_machine_and_kind_then_a_numbered_file_not_an_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)

    def doc(value: int) -> dict[str, Any]:
        return {"date": "2026-12-07", "machine": {"name": "2cpu-test"}, "value": value}

    first = report.save_run(doc(1), "kind", lambda d: f"run {d['value']}\n")
    second = report.save_run(doc(2), "kind", lambda d: f"run {d['value']}\n")
    assert first.name == "2026-12-07-2cpu-test-kind.md"
    assert second.name == "2026-12-07-2cpu-test-kind-2.md"
    assert first.read_text() == "run 1\n" and second.read_text() == "run 2\n"
    assert '"value": 2' in (tmp_path / "2026-12-07-2cpu-test-kind-2.json").read_text()
