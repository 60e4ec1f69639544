"""Markdown for the speculation table, and output identity against speculation off."""

from __future__ import annotations

from typing import Any

WORKLOADS = ("chat_batch1", "repeat_batch1", "chat_concurrent16")


def compare_outputs(results: list[dict[str, Any]]) -> None:
    """Add ``identical`` (outputs equal to the ``none`` run) and drop the token lists."""
    base = next((r for r in results if r["config"] == "none"), None)
    for result in results:
        for workload in WORKLOADS:
            run = result[workload]
            if base is not None:
                pairs = zip(run["outputs"], base[workload]["outputs"], strict=True)
                run["identical"] = f"{sum(a == b for a, b in pairs)}/{len(run['outputs'])}"
    for result in results:
        for workload in WORKLOADS:
            result[workload].pop("outputs", None)


def _cell(run: dict[str, Any], base: dict[str, Any] | None) -> str:
    text = f"{run['tok_per_s']:.1f}"
    if base is not None:
        text += f" ({run['tok_per_s'] / base['tok_per_s']:.2f}x)"
    return text


def acceptance_text(run: dict[str, Any], decimals: int = 0) -> str:
    """"33% (44%/22%)": overall acceptance, then by position; "-" when nothing was drafted."""
    if "acceptance" not in run:
        return "-"
    by_pos = "/".join(f"{p:.0%}" for p in run["accepted_by_position"])
    return f"{run['acceptance']:.{decimals}%} ({by_pos})"


def step_cost(run: dict[str, Any], base: dict[str, Any] | None) -> str:
    """Wall time of one verify step over one plain decode step (tokens - accepted = steps)."""
    if base is None or "acceptance" not in run:
        return "-"
    per_step = run["wall_s"] / (run["tokens"] - run["accepted"])
    return f"{per_step / (base['wall_s'] / base['tokens']):.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    base = next((r for r in results if r["config"] == "none"), None)
    lines = [
        f"# Speculative decoding on {report['machine']['cpu']} "
        f"({report['machine']['cores']} cores), {report['date']}",
        "",
        f"Offline vLLM, float32, {report.get('mode', 'eager')}, greedy, "
        f"{report['max_tokens']} tokens max. Load average "
        f"{report['machine']['load_avg_1m']:.1f} at start, {report['load_avg_1m_end']:.1f} at end"
        " (shared machine: absolute numbers are noisy, ratios less so).",
        "",
        "| config | chat batch 1 tok/s | repeat batch 1 tok/s | 16 concurrent chat tok/s "
        "| acceptance chat (by position) | acceptance repeat | step cost chat b1 "
        "| identical to none |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ident = " / ".join(r[w].get("identical", "-") for w in WORKLOADS)
        cells = [_cell(r[w], base[w] if base else None) for w in WORKLOADS]
        cost = step_cost(r["chat_batch1"], base["chat_batch1"] if base else None)
        lines.append(f"| {r['config']} | {' | '.join(cells)} | {acceptance_text(r['chat_batch1'])} "
                     f"| {acceptance_text(r['repeat_batch1'])} | {cost} | {ident} |")
    lines += ["", "Step cost: wall time per verify step (tokens - accepted) over a plain decode "
              "step, chat batch 1: what one round of drafting adds."]
    repeats = base["chat_concurrent16"].get("repeats") if base else None
    if repeats:
        lines.append(f"16 concurrent: {repeats} runs of the 16 chats pooled (tokens over summed "
                     "wall time); each run's tok/s is in the JSON (`tok_per_s_each`).")
    return "\n".join([*lines, ""])
