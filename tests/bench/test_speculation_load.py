"""bench/speculation_load.py: turns rotate, ratios are taken within a round."""

from __future__ import annotations

from typing import Any

from bench.speculation_load import render, rounds_order, summarise


def test_rounds_rotate_so_no_configuration_always_goes_first() -> None:
    order = rounds_order(["none", "skip", "fill"], 4)
    assert order == [["none", "skip", "fill"], ["skip", "fill", "none"],
                     ["fill", "none", "skip"], ["none", "skip", "fill"]]


def _turn(r: int, config: str, tok_per_s: float, **extra: Any) -> dict[str, Any]:
    return {"round": r, "config": config, "tokens": int(tok_per_s), "wall_s": 1.0,
            "tok_per_s": tok_per_s, "outputs": [[1, 2]], **extra}


def test_ratio_is_taken_against_the_plain_engine_of_the_same_round() -> None:
    # The machine slows by half in round 1: per-round ratios stay 0.9, pooled tok/s drops.
    turns = [_turn(0, "none", 200.0), _turn(0, "skip", 180.0, drafted=10, accepted=4),
             _turn(1, "none", 100.0), _turn(1, "skip", 90.0, drafted=10, accepted=2)]
    none, skip = summarise(["none", "skip"], turns)
    assert none["ratio_each"] == [1.0, 1.0]
    assert [round(r, 6) for r in skip["ratio_each"]] == [0.9, 0.9]
    assert round(skip["ratio_median"], 6) == 0.9
    assert skip["tok_per_s"] == 135.0
    assert skip["acceptance"] == 0.3 and skip["identical"] == 2


def test_render_quotes_the_median_ratio_and_identity() -> None:
    turns = [_turn(0, "none", 200.0), _turn(0, "skip", 198.0)]
    report = {"date": "2026-11-29", "mode": "compiled", "rounds": 1, "max_tokens": 128,
              "load_avg_1m_end": 1.0, "machine": {"cpu": "cpu", "cores": 2, "load_avg_1m": 0.5},
              "results": summarise(["none", "skip"], turns)}
    text = render(report)
    assert "| skip | 198.0 | 0.990x | 0.990x (0.99-0.99) | - | 0 | 1/1 turns |" in text
