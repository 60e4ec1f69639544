"""Speculation under load, interleaved: 16 concurrent chats, the engines taking turns.

One configuration after another (``bench.speculation``) sees this shared machine drift by
10% and more between runs (compare the plain rows of ``*-speculation-compiled-e/f``), as
large as the effect to measure. Here every configuration's engine is started first (an
idle vLLM engine sleeps), then they take turns: round r runs each engine once, starting
at a different one each round. A turn: all 16 chats at once, greedy, 128 tokens. Per
configuration: pooled tok/s, and the ratio to the plain engine within each round; the
median of those ratios is the number to quote.

    python -m bench.speculation_load --compiled --rounds 8 \\
        --configs none,eagle3-adaptive,eagle3-adaptive-fill
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from datetime import date
from pathlib import Path
from typing import Any

from bench.speculation import (
    CHAT,
    MAX_TOKENS,
    REPO,
    _acceptance,
    _chat_ids,
    _llm,
    _run,
    configs,
    machine,
)
from bench.speculation_report import acceptance_text


def after_load(llm: Any, chat: list[list[int]]) -> dict[str, Any]:
    """Acceptance of one long answer decoded first under load (k=0), then alone, vs alone.

    15 short answers (48 tokens) and one long one (256) start together: the long one's
    first ~48 tokens run with no drafts, the rest alone with drafts. With ``skip`` the
    drafter's KV cache lacks those first positions; this shows what that costs.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    short = SamplingParams(temperature=0.0, max_tokens=48)
    long = SamplingParams(temperature=0.0, max_tokens=256, ignore_eos=True)
    prompts = [TokensPrompt(prompt_token_ids=p) for p in chat]
    busy = llm.generate(prompts, [short] * (len(prompts) - 1) + [long], use_tqdm=False)[-1]
    alone = llm.generate(prompts[-1:], long, use_tqdm=False)[0]
    assert busy.outputs[0].token_ids == alone.outputs[0].token_ids, "greedy output changed"
    return {"after_load": _acceptance([busy]), "alone": _acceptance([alone])}


def rounds_order(names: list[str], rounds: int) -> list[list[str]]:
    """Each round runs every configuration once, rotated so none always goes first."""
    n = len(names)
    return [[names[(r + i) % n] for i in range(n)] for r in range(rounds)]


def summarise(names: list[str], turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: pooled tok/s, per-round ratios to ``none``, acceptance, identity."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for turn in turns:
        by_round.setdefault(turn["round"], {})[turn["config"]] = turn
    base_outputs = next(t["outputs"] for t in turns if t["config"] == "none")
    out = []
    for name in names:
        mine = [t for t in turns if t["config"] == name]
        ratios = [r[name]["tok_per_s"] / r["none"]["tok_per_s"] for r in by_round.values()]
        drafted = sum(t.get("drafted", 0) for t in mine)
        accepted = sum(t.get("accepted", 0) for t in mine)
        out.append({
            "config": name,
            "tok_per_s": sum(t["tokens"] for t in mine) / sum(t["wall_s"] for t in mine),
            "tok_per_s_each": [t["tok_per_s"] for t in mine],
            "ratio_each": ratios,
            "ratio_median": statistics.median(ratios),
            "drafted": drafted,
            "acceptance": accepted / drafted if drafted else None,
            "identical": sum(t["outputs"] == base_outputs for t in mine),
            "turns": len(mine),
        })
    return out


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    base = next(r for r in report["results"] if r["config"] == "none")
    lines = [
        f"# Speculation under load, interleaved, on {m['cpu']} ({m['cores']} cores), "
        f"{report['date']}", "",
        f"Offline vLLM, float32, {report['mode']}, greedy, {report['max_tokens']} tokens max; "
        f"16 chats at once per turn, {report['rounds']} rounds, the engines taking turns. "
        f"Load average {m['load_avg_1m']:.1f} at start, {report['load_avg_1m_end']:.1f} at end.",
        "",
        "| config | pooled tok/s | pooled ratio | median ratio per round (min-max) "
        "| acceptance | drafted tokens | identical to none |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        lines.append(
            f"| {r['config']} | {r['tok_per_s']:.1f} | {r['tok_per_s'] / base['tok_per_s']:.3f}x "
            f"| {r['ratio_median']:.3f}x ({min(r['ratio_each']):.2f}-{max(r['ratio_each']):.2f}) "
            f"| {acc} | {r['drafted']} | {r['identical']}/{r['turns']} turns |")
    lines += ["", "| config | acceptance of a long answer after 48 steps under load "
              "(by position) | the same answer alone |", "| --- | --- | --- |"]
    for r in report["results"]:
        if r.get("recovery", {}).get("alone"):
            lines.append(f"| {r['config']} | {acceptance_text(r['recovery']['after_load'], 1)} "
                         f"| {acceptance_text(r['recovery']['alone'], 1)} |")
    lines += ["", "Ratio per round: a configuration's tok/s over the plain engine's in the "
              "same round (turns seconds apart); each turn's tok/s is in the JSON."]
    return "\n".join(lines) + "\n"


def main() -> None:
    cache = Path.home() / ".cache" / "llm-gateway" / "models"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=cache / "smollm2-135m-instruct")
    parser.add_argument("--eagle3", type=Path, default=cache / "smollm2-135m-instruct-eagle3")
    parser.add_argument("--configs", default="none,eagle3-adaptive,eagle3-adaptive-fill")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = args.configs.split(",")
    if "none" not in names:
        parser.error("--configs must include none (the baseline)")
    known = {c.name: c for c in configs(cache / "unused", cache / "unused", args.eagle3)}
    before = machine()
    engines = {n: _llm(args.model, known[n].speculation, eager=not args.compiled) for n in names}
    chat = _chat_ids(args.model, CHAT)
    for llm in engines.values():
        _run(llm, chat[:2], together=True)  # warm-up
    turns = [{"round": r, "config": n, **_run(engines[n], chat, together=True)}
             for r, order in enumerate(rounds_order(names, args.rounds)) for n in order]
    report = {"date": date.today().isoformat(), "machine": before,
              "mode": "compiled" if args.compiled else "eager", "rounds": args.rounds,
              "max_tokens": MAX_TOKENS, "load_avg_1m_end": os.getloadavg()[0],
              "speculation": {n: known[n].speculation for n in names},
              "results": summarise(names, turns)}
    for result in report["results"]:
        if result["config"] != "none":
            result["recovery"] = after_load(engines[result["config"]], chat)
    stem = args.out.with_suffix("") if args.out else (
        REPO / "bench" / "results" / f"{date.today().isoformat()}-{platform.node()}"
        "-speculation-load")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(render(report))
    print(stem.with_suffix(".md").read_text())
    for llm in engines.values():
        llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
