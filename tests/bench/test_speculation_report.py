"""The speculation table: ratios, the per-step cost of drafting, and output identity."""

from __future__ import annotations

from typing import Any

from bench.speculation_report import compare_outputs, render_markdown, step_cost


def _run(tokens: int, wall_s: float, accepted: int | None = None,
         outputs: list[list[int]] | None = None) -> dict[str, Any]:
    run: dict[str, Any] = {"tokens": tokens, "wall_s": wall_s, "tok_per_s": tokens / wall_s,
                           "outputs": outputs or [[1, 2]]}
    if accepted is not None:
        run.update(drafted=2 * (tokens - accepted), accepted=accepted,
                   acceptance=accepted / (2 * (tokens - accepted)),
                   accepted_by_position=[0.3, 0.1])
    return run


def test_step_cost_when_drafting_doubles_each_step_then_reports_two() -> None:
    plain = _run(tokens=100, wall_s=10.0)  # 0.1 s a step
    spec = _run(tokens=100, wall_s=16.0, accepted=20)  # 80 steps of 0.2 s
    assert step_cost(spec, plain) == "2.00"
    assert step_cost(plain, plain) == "-" and step_cost(spec, None) == "-"


def test_render_when_a_config_differs_from_none_then_identity_and_cost_shown() -> None:
    none = {"config": "none", **{w: _run(100, 10.0, outputs=[[1, 2], [3]])
                                 for w in ("chat_batch1", "repeat_batch1", "chat_concurrent16")}}
    head = {"config": "head", **{w: _run(100, 8.0, accepted=20, outputs=[[1, 2], [4]])
                                 for w in ("chat_batch1", "repeat_batch1", "chat_concurrent16")}}
    compare_outputs([none, head])
    text = render_markdown({"results": [none, head], "date": "2026-11-29", "max_tokens": 128,
                            "machine": {"cpu": "cpu", "cores": 2, "load_avg_1m": 0.1},
                            "load_avg_1m_end": 0.2})
    row = next(line for line in text.splitlines() if line.startswith("| head"))
    assert "12.5 (1.25x)" in row and "| 1.00 |" in row and "1/2 / 1/2 / 1/2" in row
    assert "outputs" not in head["chat_batch1"]
