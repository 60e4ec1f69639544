"""Should the default CPU profile speculate? Eager, compiled and compiled + EAGLE-3, in one run.

Three offline engines (float32, greedy, 128 tokens) are started first, then take turns:
each round runs every stream count (1, 4, 16) on every engine, the engine order rotating
so none always goes first. 1 stream: chats one after another; 4 and 16: that many chats
at once. A configuration's ratio is its tok/s over a baseline's in the same round and
stream count (turns seconds apart, so the shared machine's drift cancels); the median per
stream count is the number to quote. Outputs are compared token for token with the
compiled plain engine's.

The verdict: EAGLE-3 (adaptive: drafts only while at most 4 requests run, ``skip`` above)
goes into the default profile only if it pays at one stream and costs nothing at 4 and 16.

    python -m bench.speculation_levels --rounds 4
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench import machine
from bench.report import save_run

LEVELS = (1, 4, 16)
SINGLE_STREAM_CHATS = 2  # chats per 1-stream turn, one after another
BASELINES = ("eager", "compiled")
DECIDING = ("compiled-eagle3-adaptive", "compiled")  # (candidate, the profile without it)
PAYS_AT_ONE = 1.05  # EAGLE-3 / compiled at 1 stream, at least
COSTS_NOTHING = 0.97  # ... and at 4 and 16 streams, at least (this machine's noise: ~3%)


@dataclass(frozen=True)
class LevelConfig:
    name: str
    eager: bool
    speculation: dict[str, Any]


def level_configs(eagle3: Path) -> tuple[LevelConfig, ...]:
    head = {"method": "eagle3", "draft_path": str(eagle3), "num_speculative_tokens": 2,
            "max_batch_size": 4}  # configs/profiles/cpu-speculation.yaml
    return (LevelConfig("eager", True, {"method": "none"}),
            LevelConfig("compiled", False, {"method": "none"}),
            LevelConfig("compiled-eagle3-adaptive", False, head))


def schedule(names: list[str], levels: tuple[int, ...], rounds: int) -> list[tuple[int, int, str]]:
    """(round, streams, config) turns: every level on every engine each round, the engine
    order rotated by round and level so each engine goes first as often as the others."""
    n = len(names)
    return [(r, level, names[(r + i + shift) % n])
            for r in range(rounds) for shift, level in enumerate(levels) for i in range(n)]


def _ratios(mine: list[dict[str, Any]], base: dict[tuple[int, int], dict[str, Any]]) -> list[float]:
    return [t["tok_per_s"] / base[(t["round"], t["level"])]["tok_per_s"]
            for t in mine if (t["round"], t["level"]) in base]


def summarise(names: list[str], levels: tuple[int, ...],
              turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration and stream count: pooled tok/s, per-round ratios to each baseline
    (median, min, max), acceptance, and turns identical to the compiled plain engine's."""
    index = {(t["config"], t["round"], t["level"]): t for t in turns}
    rows = []
    for level in levels:
        for name in names:
            mine = [t for t in turns if t["config"] == name and t["level"] == level]
            if not mine:
                continue
            row: dict[str, Any] = {
                "config": name, "streams": level,
                "tok_per_s": sum(t["tokens"] for t in mine) / sum(t["wall_s"] for t in mine),
                "tok_per_s_each": [t["tok_per_s"] for t in mine], "turns": len(mine)}
            for baseline in BASELINES:
                base = {(r, lv): t for (c, r, lv), t in index.items() if c == baseline}
                ratios = _ratios(mine, base)
                row[f"vs_{baseline}_each"] = ratios
                row[f"vs_{baseline}"] = statistics.median(ratios) if ratios else None
            drafted = sum(t.get("drafted", 0) for t in mine)
            row["acceptance"] = sum(t.get("accepted", 0) for t in mine) / drafted if drafted \
                else None
            row["identical"] = sum(
                t["outputs"] == index.get(("compiled", t["round"], level), {}).get("outputs")
                for t in mine)
            rows.append(row)
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Does the candidate pay at 1 stream and cost nothing at every higher stream count?"""
    candidate, baseline = DECIDING
    mine = {r["streams"]: r for r in rows if r["config"] == candidate}
    ratios = {level: row[f"vs_{baseline}"] for level, row in sorted(mine.items())}
    reasons = []
    one = ratios.get(1)
    if one is None or one < PAYS_AT_ONE:
        reasons.append(f"below {PAYS_AT_ONE}x of {baseline} at 1 stream")
    reasons += [f"{ratio:.3f}x of {baseline} at {level} streams (< {COSTS_NOTHING}x)"
                for level, ratio in ratios.items()
                if level > 1 and (ratio is None or ratio < COSTS_NOTHING)]
    reasons += [f"greedy output differs at {level} streams"
                for level, row in mine.items() if row["identical"] != row["turns"]]
    return {"candidate": candidate, "baseline": baseline, "ratios": ratios,
            "pays": not reasons, "reasons": reasons}


def _cell(row: dict[str, Any], baseline: str) -> str:
    each = row[f"vs_{baseline}_each"]
    if row["config"] == baseline or not each:
        return "-"
    return f"{row[f'vs_{baseline}']:.3f}x ({min(each):.2f}-{max(each):.2f})"


def render(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["verdict"]
    lines = [
        f"# Speculation by load, interleaved, on {m['name']}, {doc['date']}", "",
        f"{m['cpu']}, {m['cores_usable']} cores; vLLM {m['vllm']}, commit {m['git_commit']}. "
        f"Offline vLLM, float32, greedy, {doc['max_tokens']} tokens max; {doc['rounds']} rounds,"
        f" the engines taking turns; 1 stream = {SINGLE_STREAM_CHATS} chats one after another."
        f" Load average {m['load_average_start'][0]:.1f} at start, "
        f"{doc['load_average_end'][0]:.1f} at end.", "",
        "| streams | config | pooled tok/s | vs eager, median per round (min-max) "
        "| vs compiled | acceptance | identical to compiled |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["results"]:
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        lines.append(f"| {r['streams']} | {r['config']} | {r['tok_per_s']:.1f} "
                     f"| {_cell(r, 'eager')} | {_cell(r, 'compiled')} | {acc} "
                     f"| {r['identical']}/{r['turns']} turns |")
    ratios = ", ".join(f"{lv} stream{'s' if lv > 1 else ''} {x:.3f}x"
                       for lv, x in ((int(k), y) for k, y in v["ratios"].items())
                       if x is not None)
    lines += ["", f"Verdict: {v['candidate']} vs {v['baseline']}: {ratios}: "
              + ("**pays** (>= 1.05x at 1 stream, >= 0.97x at 4 and 16)." if v["pays"]
                 else "does not pay: " + "; ".join(v["reasons"]) + ".")]
    return "\n".join(lines) + "\n"


def _measure(model: Path, eagle3: Path, rounds: int, before: str | None,
             lock: Path | None) -> list[dict[str, Any]]:
    from bench.speculation import CHAT, _chat_ids, _llm, _run

    chosen = level_configs(eagle3)
    engines = {c.name: _llm(model, c.speculation, eager=c.eager) for c in chosen}
    chat = _chat_ids(model, CHAT)
    for llm in engines.values():
        _run(llm, chat[:2], together=True)  # warm-up
    if before:  # e.g. wait until the machine is quiet; the engines start meanwhile
        subprocess.run(["bash", "-c", before], check=True)
    turns = []
    with _locked(lock):
        for r, level, name in schedule(list(engines), LEVELS, rounds):
            prompts = chat[:SINGLE_STREAM_CHATS] if level == 1 else chat[:level]
            turns.append({"round": r, "level": level, "config": name,
                          **_run(engines[name], prompts, together=level > 1)})
    for llm in engines.values():
        llm.llm_engine.engine_core.shutdown()
    return turns


def measure_levels(model: Path, eagle3: Path, rounds: int, before: str | None = None,
                   lock: Path | None = None) -> dict[str, Any]:
    """Start the three engines, let them take turns, summarise: a result document's body
    (no date, no machine), with the verdict."""
    from bench.speculation import MAX_TOKENS

    configs = level_configs(eagle3)
    turns = _measure(model, eagle3, rounds, before, lock)
    results = summarise([c.name for c in configs], LEVELS, turns)
    return {"rounds": rounds, "levels": list(LEVELS), "max_tokens": MAX_TOKENS,
            "configs": {c.name: {"eager": c.eager, "speculation": c.speculation}
                        for c in configs},
            "results": results, "verdict": verdict(results),
            "turns": [{k: v for k, v in t.items() if k != "outputs"} for t in turns]}


@contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """Hold ``flock(path)`` while measuring (machines shared with other benchmarks)."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> None:
    cache = Path.home() / ".cache" / "llm-gateway" / "models"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=cache / "smollm2-135m-instruct")
    parser.add_argument("--eagle3", type=Path, default=cache / "smollm2-135m-instruct-eagle3")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--kind", default="speculation-levels", help="result file suffix")
    parser.add_argument("--before", help="shell command run once the engines are warm, "
                        "before measuring (e.g. wait for a quiet machine)")
    parser.add_argument("--lock", type=Path, help="flock this file while measuring")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    host = machine.describe()
    body = measure_levels(args.model, args.eagle3, args.rounds, args.before, args.lock)
    doc = {"date": date.today().isoformat(), "machine": host, **body,
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, args.kind, render).read_text())


if __name__ == "__main__":
    main()
