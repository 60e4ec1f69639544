"""The fair-share benchmark's Markdown: B's TTFT and the served-token shares, per mode."""

from __future__ import annotations

from typing import Any


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} s" if isinstance(value, float) else str(value)


def _ttft_row(name: str, cell: dict[str, Any]) -> str:
    censored = cell["censored"]
    cut = f"{censored} (waited {cell['censored_max_wait_s']} s)" if censored else "0"
    return (f"| {name} | {cell['n']} | {_s(cell['p50_s'])} | {_s(cell['p95_s'])} | {cut} | "
            f"{cell.get('tokens_per_s', '-')} | {cell['errors'] or '-'} | {_load(cell)} |")


def _verdict(fcfs: dict[str, Any], fair: dict[str, Any]) -> list[str]:
    """The issue's goals, computed from this run's numbers."""
    lines = []
    alone, b = fcfs["unloaded"]["p95_s"], fair["ttft"]["p95_s"]
    if alone and b:
        lines.append(f"- B's TTFT p95 with A saturating, fair queue: {b / alone:.2f}x its "
                     "unloaded p95 (goal: within 2x).")
    first, fair_rate = fcfs["ttft"].get("tokens_per_s"), fair["ttft"].get("tokens_per_s")
    if first and fair_rate:
        lines.append(f"- Aggregate tokens/s while A saturates and B asks: fair / first-come = "
                     f"{fair_rate / first:.3f} (goal: at least 0.97).")
    for ratio, goal in ((1, 0.5), (3, 0.75)):
        share = fair[f"shares_{ratio}_1"]["share_a"]
        if share is not None:
            lines.append(f"- A's served share at weights {ratio}:1: {share} (goal {goal} "
                         f"+/- 10%: {goal * 0.9:.3f}-{min(1.0, goal * 1.1):.3f}).")
    return lines


def _load(cell: dict[str, Any]) -> str:
    return " / ".join(str(x) for x in cell.get("load_average_end", [])) or "-"


def _share_row(name: str, cell: dict[str, Any]) -> str:
    tokens, share = cell["tokens"], cell["share_a"]
    return (f"| {name} | {tokens.get('a', 0)} | {tokens.get('b', 0)} | "
            f"{'-' if share is None else share} | {cell['tokens_per_s']} | "
            f"{cell['errors'] or '-'} | {_load(cell)} |")


def render(doc: dict[str, Any]) -> str:
    machine, args = doc["machine"], doc["args"]
    fcfs, fair = doc["modes"]["first_come"], doc["modes"]["fair"]
    seats = int(args["seats"])
    lines = [
        "# Fair share under saturation (issue #32)", "",
        f"Machine: {machine['cpu']}, {machine['cores_usable']} cores usable, "
        f"{machine['memory_gib']} GiB, shared with other engineers: load average "
        f"{[round(x, 1) for x in machine['load_average_start']]} at the start, "
        f"{[round(x, 1) for x in doc['load_average_end']]} at the end. "
        f"Commit {machine['git_commit']}, vLLM {machine['vllm']}.", "",
        f"Real gateway (profile test, SmolLM2-135M fp32 eager, max_num_seqs {seats}, "
        f"limits.queue_reserve {args.get('reserve', '0')}), one "
        f"start per mode. Tenant A keeps {4 * seats} streams open (0.5-1.5 x "
        f"{args['long_tokens']} tokens, so they end at different times); a quarter into the "
        f"phase tenant B starts sending one request of {args['short_tokens']} tokens at a time "
        f"(TTFT). Shares: each tenant keeps {2 * seats} long streams open; tokens counted from "
        f"the engine's usage on every chunk over the phase's last two thirds "
        f"(phases of {args['phase_s']} s). {args.get('note', '')}", "",
        *_verdict(fcfs, fair), "",
        "## Tenant B's time to first token", "",
        "tokens/s: both tenants' generated tokens over the part of the phase where B asks.", "",
        "| run | requests | p50 | p95 | cut off by the phase end | tokens/s | errors | "
        "load 1/5/15 min |",
        "|---|---|---|---|---|---|---|---|",
        _ttft_row("B alone (unloaded)", fcfs["unloaded"]),
        _ttft_row("A saturating, first-come", fcfs["ttft"]),
        _ttft_row("A saturating, fair queue", fair["ttft"]), "",
        "## Served-token shares, both tenants backlogged", "",
        "| run | A tokens | B tokens | A's share | tokens/s | errors | load 1/5/15 min |",
        "|---|---|---|---|---|---|---|",
        _share_row("first-come, 1:1", fcfs["shares_1_1"]),
        _share_row("fair, weights 1:1 (goal 0.50)", fair["shares_1_1"]),
        _share_row("fair, weights 3:1 (goal 0.75)", fair["shares_3_1"]), "",
    ]
    return "\n".join(lines)
