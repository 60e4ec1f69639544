"""bench/speculation_levels.py: the turn order, ratios within a round and level, the verdict."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench.speculation_levels import level_configs, render, schedule, summarise, verdict

NAMES = ["eager", "compiled", "compiled-eagle3-adaptive"]


def test_every_round_runs_every_level_on_every_engine_each_going_first_in_turn() -> None:
    turns = schedule(NAMES, (1, 4, 16), 3)
    assert len(turns) == 27
    assert turns[:3] == [(0, 1, "eager"), (0, 1, "compiled"), (0, 1, "compiled-eagle3-adaptive")]
    assert turns[3:6] == [(0, 4, "compiled"), (0, 4, "compiled-eagle3-adaptive"), (0, 4, "eager")]
    for level in (1, 4, 16):
        first = [name for i, (_, lv, name) in enumerate(turns) if lv == level and i % 3 == 0]
        assert Counter(first) == Counter(NAMES)  # over 3 rounds each engine leads once
    assert Counter((r, lv) for r, lv, _ in turns) == {(r, lv): 3 for r in range(3)
                                                      for lv in (1, 4, 16)}


def test_the_candidate_is_the_shipped_head_adaptive_and_the_baselines_plain() -> None:
    eager, compiled, head = level_configs(Path("/heads/eagle3"))
    assert eager.eager and not compiled.eager and not head.eager
    assert eager.speculation == compiled.speculation == {"method": "none"}
    assert head.speculation == {"method": "eagle3", "draft_path": "/heads/eagle3",
                                "num_speculative_tokens": 2, "max_batch_size": 4}


def _turn(r: int, level: int, config: str, tok_per_s: float, **extra: Any) -> dict[str, Any]:
    return {"round": r, "level": level, "config": config, "tokens": int(tok_per_s),
            "wall_s": 1.0, "tok_per_s": tok_per_s, "outputs": [[level]], **extra}


def _turns(head_1: float, head_16: float) -> list[dict[str, Any]]:
    # Round 1 runs at half speed: the ratios taken within a round do not see it.
    out = []
    for r, speed in ((0, 1.0), (1, 0.5)):
        out += [_turn(r, 1, "eager", 10 * speed), _turn(r, 1, "compiled", 20 * speed),
                _turn(r, 1, NAMES[2], 20 * head_1 * speed, drafted=10, accepted=4),
                _turn(r, 16, "eager", 100 * speed), _turn(r, 16, "compiled", 200 * speed),
                _turn(r, 16, NAMES[2], 200 * head_16 * speed)]
    return out


def test_ratios_are_taken_within_the_same_round_and_level() -> None:
    rows = summarise(NAMES, (1, 16), _turns(1.4, 0.99))
    by = {(r["config"], r["streams"]): r for r in rows}
    head = by[(NAMES[2], 1)]
    assert [round(x, 6) for x in head["vs_compiled_each"]] == [1.4, 1.4]
    assert round(head["vs_eager"], 6) == 2.8
    assert head["tok_per_s"] == (28 + 14) / 2
    assert head["acceptance"] == 0.4 and head["identical"] == 2
    assert by[("compiled", 16)]["vs_compiled"] == 1.0
    assert by[("eager", 16)]["vs_compiled"] == 0.5 and by[("eager", 16)]["acceptance"] is None


def test_verdict_needs_a_gain_at_one_stream_and_no_loss_under_load() -> None:
    assert verdict(summarise(NAMES, (1, 16), _turns(1.4, 0.99)))["pays"]
    slow = verdict(summarise(NAMES, (1, 16), _turns(1.4, 0.9)))
    assert not slow["pays"] and "at 16 streams" in slow["reasons"][0]
    flat = verdict(summarise(NAMES, (1, 16), _turns(1.02, 1.0)))
    assert not flat["pays"] and "at 1 stream" in flat["reasons"][0]


def test_verdict_refuses_a_changed_greedy_output() -> None:
    turns = _turns(1.4, 1.0)
    turns[2]["outputs"] = [[99]]
    result = verdict(summarise(NAMES, (1, 16), turns))
    assert not result["pays"] and result["reasons"] == ["greedy output differs at 1 streams"]


def test_render_shows_each_ratio_and_the_verdict() -> None:
    rows = summarise(NAMES, (1, 16), _turns(1.4, 0.99))
    machine = {"name": "2cpu-x", "cpu": "X", "cores_usable": 2, "vllm": "0.32.0",
               "git_commit": "abc", "load_average_start": [1.0, 1.0, 1.0]}
    doc = {"date": "2026-12-02", "machine": machine, "rounds": 2, "max_tokens": 128,
           "load_average_end": [2.0, 1.0, 1.0], "results": rows, "verdict": verdict(rows)}
    text = render(doc)
    assert "| 1 | compiled-eagle3-adaptive | 21.0 | 2.800x (2.80-2.80) | 1.400x (1.40-1.40) " \
           "| 40% | 2/2 turns |" in text
    assert "| 16 | compiled | 150.0 | 2.000x (2.00-2.00) | - | - | 2/2 turns |" in text
    assert "1 stream 1.400x, 16 streams 0.990x: **pays**" in text
