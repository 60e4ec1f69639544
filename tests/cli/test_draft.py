"""``llm-gateway draft``: the progress display the training pipeline reports through."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from cli.draft import _RichReporter, progress_columns


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
