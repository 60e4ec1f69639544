"""The Markdown record of a run: the headline comparison, then every workload of every arm,
with what each arm added over the stub alone (the same workload, the same stub)."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("requests_per_s", "req/s"), ("tokens_per_s", "tok/s"),
    ("ttft_p50_ms", "TTFT p50"), ("ttft_p99_ms", "TTFT p99"),
    ("itl_p50_ms", "ITL p50"), ("itl_p99_ms", "ITL p99"),
    ("latency_p50_ms", "latency p50"), ("latency_p99_ms", "latency p99"),
    ("target_cpu_util", "target CPU (cores)"), ("cpu_s_per_1k_tokens", "CPU s / 1k tok"),
    ("tokens_per_core_s", "tok / core-s"), ("requests_per_core_s", "req / core-s"),
    ("kib_per_open_stream", "KiB / open stream"), ("errors", "errors"),
)
ADDED = (("ttft_p50_ms", "+TTFT p50"), ("ttft_p99_ms", "+TTFT p99"),
         ("itl_p50_ms", "+ITL p50"), ("itl_p99_ms", "+ITL p99"),
         ("latency_p50_ms", "+latency p50"), ("latency_p99_ms", "+latency p99"))
BASELINES = {"gateway remote": "replica stub (direct)", "gateway relay": "OpenAI stub (direct)",
             "LiteLLM (no database)": "OpenAI stub (direct)"}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def added(doc: dict[str, Any], arm: str, workload: str, key: str) -> float | None:
    base = BASELINES.get(arm)
    mine = doc["arms"].get(arm, {}).get(workload, {}).get(key)
    theirs = doc["arms"].get(base, {}).get(workload, {}).get(key) if base else None
    return None if mine is None or theirs is None else round(mine - theirs, 3)


def headline(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per compared arm: the numbers the issue's goals name."""
    rows: dict[str, dict[str, Any]] = {}
    for arm in BASELINES:
        results = doc["arms"].get(arm)
        if not results:
            continue
        levels = sorted(int(k.split("-c")[1]) for k in results if k.startswith("stream-c"))
        half = "stream-c" + str(levels[len(levels) // 2]) if levels else None
        top = "requests-c" + str(max(int(k.split("-c")[1]) for k in results
                                     if k.startswith("requests-c")))
        rows[arm] = {
            "added_latency_p50_ms (1 client, 16 tokens)": added(doc, arm, "requests-c1",
                                                                "latency_p50_ms"),
            "added_latency_p99_ms (1 client)": added(doc, arm, "requests-c1", "latency_p99_ms"),
            f"req/s at {top}": results[top]["requests_per_s"],
            f"req per core-s at {top}": results[top].get("requests_per_core_s"),
            "streamed tok/s, back to back": results["stream-saturation"]["tokens_per_s"],
            "tok per core-s, back to back": results["stream-saturation"].get(
                "tokens_per_core_s"),
            "CPU s per 1k tokens, back to back": results["stream-saturation"].get(
                "cpu_s_per_1k_tokens"),
            f"added TTFT p50 / p99 ms at {half}": (added(doc, arm, half or "", "ttft_p50_ms"),
                                                   added(doc, arm, half or "", "ttft_p99_ms")),
            f"added ITL p50 / p99 ms at {half}": (added(doc, arm, half or "", "itl_p50_ms"),
                                                  added(doc, arm, half or "", "itl_p99_ms")),
            "KiB per open stream": results.get("memory", {}).get("kib_per_open_stream"),
        }
    return rows


def _headline_table(doc: dict[str, Any]) -> list[str]:
    rows = headline(doc)
    if not rows:
        return []
    arms = list(rows)
    lines = ["| | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for key in rows[arms[0]]:
        cells = []
        for arm in arms:
            value = rows[arm].get(key)
            cells.append(" / ".join(_cell(v) for v in value) if isinstance(value, tuple)
                         else _cell(value))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def _workload_table(doc: dict[str, Any], workload: str) -> list[str]:
    arms = [arm for arm, results in doc["arms"].items() if workload in results]
    head = ["arm", *(title for _, title in COLUMNS), *(title for _, title in ADDED)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        row = doc["arms"][arm][workload]
        cells = [arm, *(_cell(row.get(key)) for key, _ in COLUMNS),
                 *(_cell(added(doc, arm, workload, key)) for key, _ in ADDED)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(doc: dict[str, Any]) -> str:
    machine, sizes = doc["machine"], doc["sizes"]
    lines = [
        f"# Gateway overhead against token-rate stubs ({doc['date']})", "",
        f"Machine: {machine['cpu']}, {machine['cores_usable']} cores, "
        f"{machine.get('memory_gib')} GiB; commit {machine.get('git_commit')}; load average "
        f"at start {machine['load_average_start']}, at end {doc.get('load_average_end')}.",
        f"Cores: target (gateway or LiteLLM) {doc['cores']['target']}, stubs and load "
        f"generator {doc['cores']['stubs_and_load']}. {doc.get('note') or ''}", "",
        f"Sizes: {sizes}.", "",
        "Times are milliseconds; `+` columns are what the arm added over the stub alone "
        "(same workload); `target CPU` is the target process's CPU-seconds per second of the "
        "window (1.0 = its core saturated); `tok / core-s` and `req / core-s` are per "
        "CPU-second of the target. LiteLLM database mode: " + doc["litellm_database_mode"] + ".",
        "", "## Headline", "", *_headline_table(doc), "",
    ]
    workloads: list[str] = []
    for results in doc["arms"].values():
        workloads += [k for k in results if k not in workloads]
    for workload in workloads:
        lines += [f"## {workload}", "", *_workload_table(doc, workload), ""]
    return "\n".join(lines)
