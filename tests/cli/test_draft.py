"""``llm-gateway draft``: the progress display of training, and what install finds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from cli.draft import _RichReporter, app, progress_columns
from draft_models.registry import SHIPPED_DIR


def test_reporter_when_stage_starts_before_any_info_then_it_renders() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    with Progress(*progress_columns(), console=console) as progress:
        reporter = _RichReporter(progress)
        reporter.stage("target answers (held-out)", 1)
        progress.refresh()
        reporter.advance(1, 1, "loss 3.210")
        progress.refresh()
    text = out.getvalue()
    assert "target answers (held-out)" in text
    assert "loss 3.210" in text


def test_install_when_no_target_is_prepared_then_every_shipped_draft_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMGW_MODEL_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["install"])
    assert result.exit_code == 0, result.output
    shipped = [folder for folder in SHIPPED_DIR.iterdir() if folder.is_dir()]
    assert len(shipped) == 3
    assert result.output.count("target not prepared; skipped") == len(shipped)
