"""The one run behind the CPU profile's defaults: compiled, speculation, the peer, start-up.

``python -m bench.defaults`` measures, one part after another in one run on one machine,
and writes ``bench/results/<date>-<machine>-defaults.{json,md}``:

1. ``levels``: eager, compiled and compiled + EAGLE-3 (adaptive) offline engines taking
   turns at 1, 4 and 16 streams (``bench.speculation_levels``), and its verdict on whether
   the default CPU profile should speculate;
2. ``peer``: the gateway serving the production profile (``cpu``; ``--peer-profiles``
   adds others, e.g. ``cpu-w8a8`` where the CPU has AMX) against llama.cpp's server on the
   GGUF the model ships as, at 1 and 8 streams, never running at the same time
   (``llm-gateway bench --sections peer --peer llama.cpp``; llama-cpp-python is built once
   from source and cached);
3. ``startup``: ``llm-gateway serve --profile cpu`` on an empty data directory, again on
   the kept compile cache, and ``--profile dev`` (eager) (``bench.startup``).

The Markdown starts with the headline numbers of all three parts, then each part's table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from bench import machine, report, speculation_levels, startup
from bench.llamacpp import LlamaCppPeer, PeerBuild, gguf_path
from bench.runner import RunOptions
from bench.session import BenchRequest, prepare, run
from bench.targets import LaunchOptions
from gateway.settings import load_settings

PARTS = ("levels", "peer", "startup")
PEER_GOAL = 2.5  # gateway / llama.cpp at 8 streams, at least


def _timed(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One part's body with when it ran and the machine's load around it. A part that fails
    is recorded with its error (and its traceback printed); the other parts still run."""
    load_before, started = list(os.getloadavg()), time.monotonic()
    print(f"[bench.defaults] {name}: started {time.strftime('%H:%M:%S')}", flush=True)
    try:
        body = measure()
    except Exception as exc:  # recorded in the result file, never dropped
        traceback.print_exc()
        body = {"error": f"{type(exc).__name__}: {exc}"}
    return {**body, "minutes": round((time.monotonic() - started) / 60, 1),
            "load_average_before": load_before, "load_average_after": list(os.getloadavg())}


def peer_pair(profile: str, logs: Path) -> dict[str, Any]:
    """The gateway on ``profile`` (its default model) against llama.cpp's server on the GGUF
    that model ships as (a quantized variant's: its base's), 1 and 8 streams."""
    logs.mkdir(parents=True, exist_ok=True)
    settings = load_settings(profile=profile)
    model = settings.default_model or next(iter(settings.models))
    peer = LlamaCppPeer.prepare(PeerBuild(), gguf_path(settings, model), model, logs)
    launch = LaunchOptions(settings, profile, None, 0.0, 900, logs)
    request = BenchRequest(settings=settings, model=model, quick=False, sections=("peer",),
                           options=RunOptions(launch, None, peer.started),
                           out_dir=logs / "peer-results", peer=peer.endpoint, kind="peer")
    ctx, _ = prepare(request)
    doc, _files = run(request, ctx, lambda description, advance: None)
    return {"profile": profile, "model": model, "section": doc["sections"]["peer"],
            "targets": doc["targets"], "method": doc["method"]}


def peer_part(profiles: list[str], logs: Path) -> dict[str, Any]:
    """Each profile against llama.cpp, one pair after another (llama.cpp measured per pair)."""
    return {"pairs": [peer_pair(profile, logs / profile) for profile in profiles]}


def levels_part(profile: str, model: str, rounds: int) -> dict[str, Any]:
    """The levels on the model folder and EAGLE-3 head ``profile`` serves (its settings
    resolve both paths), not on names spelled again here."""
    engine = load_settings(profile=profile).engine_config(model)
    head = engine.speculation
    if head.method != "eagle3" or head.draft_path is None:
        raise ValueError(f"profile {profile!r} serves {model} without an EAGLE-3 head "
                         f"(speculation: {head.method}): nothing to decide")
    return speculation_levels.measure_levels(engine.model_path, head.draft_path, rounds)


def measure(args: argparse.Namespace, logs: Path) -> dict[str, dict[str, Any]]:
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "levels": lambda: levels_part(args.profile, args.model, args.rounds),
        "peer": lambda: peer_part(args.peer_profiles.split(","), logs / "peer"),
        "startup": lambda: {"model": args.model, "starts": startup.measure_starts(
            logs / "data", args.model, args.profile, args.eager_profile, 900,
            logs / "startup")},
    }
    return {name: _timed(name, parts[name]) for name in args.parts.split(",")}


def _peer_ratios(pair: dict[str, Any]) -> dict[int, float | None]:
    return {row["concurrency"]: row["ratio"] for row in pair["section"]["rows"]}


def _peer_line(pair: dict[str, Any]) -> str:
    ratios = _peer_ratios(pair)
    eight = ratios.get(8)
    return (f"| gateway (`{pair['profile']}`) vs llama.cpp | "
            + ", ".join(f"{c} stream{'s' if c > 1 else ''}: {'-' if x is None else f'{x:.2f}x'}"
                        for c, x in ratios.items())
            + f" | >= {PEER_GOAL}x at 8 | "
            + ("met |" if eight is not None and eight >= PEER_GOAL else "**missed** |"))


def _levels_lines(part: dict[str, Any]) -> list[str]:
    vs = {(r["config"], r["streams"]): r for r in part["results"]}
    compiled = ", ".join(f"{s}: {vs[('compiled', s)]['vs_eager']:.2f}x"
                         for s in speculation_levels.LEVELS if ('compiled', s) in vs)
    verdict = part["verdict"]
    eagle = ", ".join(f"{s}: {x:.2f}x" for s, x in verdict["ratios"].items() if x is not None)
    return [f"| compiled vs eager (streams: ratio) | {compiled} | - | compiled serves |",
            f"| EAGLE-3 (adaptive) vs compiled | {eagle} | >= {speculation_levels.PAYS_AT_ONE}x"
            f" at 1, >= {speculation_levels.COSTS_NOTHING}x at 4 and 16, identical output | "
            + ("**pays**: on by default |" if verdict["pays"] else
               "does not pay: " + "; ".join(verdict["reasons"]) + " |")]


def _startup_lines(part: dict[str, Any]) -> list[str]:
    starts = ", ".join(f"{s['label']}: " + (f"{s['ready_s']:.0f} s" if "ready_s" in s
                                            else "failed") for s in part["starts"])
    return [f"| start to ready | {starts} | - | in README |"]


def headline(doc: dict[str, Any]) -> list[str]:
    """The decision table: every number the profiles' choices rest on, from this run."""
    lines = ["| what | measured | rule | outcome |", "|---|---|---|---|"]
    for name, part in doc["parts"].items():
        if "error" in part:
            lines.append(f"| {name} | failed: {part['error']} | - | **not measured** |")
        elif name == "levels":
            lines += _levels_lines(part)
        elif name == "peer":
            lines += [_peer_line(pair) for pair in part["pairs"]]
        else:
            lines += _startup_lines(part)
    return lines


def _part_markdown(name: str, doc: dict[str, Any]) -> list[str]:
    body = {**doc["parts"][name], "date": doc["date"], "machine": doc["machine"],
            "load_average_end": doc["parts"][name]["load_average_after"]}
    head = (f"## {name} ({body['minutes']} min, load average {body['load_average_before'][0]:.2f}"
            f" before, {body['load_average_after'][0]:.2f} after)")
    if "error" in body:
        return [head, "", f"Failed: {body['error']}", ""]
    if name == "levels":
        text = speculation_levels.render(body)
    elif name == "startup":
        text = startup.render({**body, "note": ""})
    else:
        pairs = body["pairs"]
        tables = [line for pair in pairs for line in report.section_markdown(
            f"Gateway `{pair['profile']}` ({pair['model']}) vs llama.cpp", pair["section"])]
        return [head, "", *tables, *[f"- {line}" for line in pairs[0]["method"]], ""]
    return [head, "", *text.split("\n", 2)[2:], ""]  # the part's own title dropped


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"# The CPU profile's defaults, one run, {m['name']}, {doc['date']}", "",
             f"{m['cpu']}, {m['cores_usable']} cores, {m['memory_gib']} GiB; vLLM {m['vllm']},"
             f" torch {m['torch']}, commit {m['git_commit']}. `python -m bench.defaults`: the "
             f"parts ran one after another ({', '.join(doc['parts'])}), nothing else measuring"
             f" on the machine; load average {m['load_average_start'][0]:.2f} at start, "
             f"{doc['load_average_end'][0]:.2f} at end.", "",
             *([f"**Note:** {doc['note']}", ""] if doc.get("note") else []),
             *headline(doc), ""]
    for name in doc["parts"]:
        lines += _part_markdown(name, doc)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--profile", default="cpu", help="the production profile measured")
    parser.add_argument("--peer-profiles", default="cpu",
                        help="profiles measured against llama.cpp (e.g. cpu,cpu-w8a8 on AMX)")
    parser.add_argument("--eager-profile", default="dev")
    parser.add_argument("--rounds", type=int, default=3, help="levels: rounds of turns")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--kind", default="defaults", help="result file suffix")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    if unknown := set(args.parts.split(",")) - set(PARTS):
        parser.error(f"unknown parts: {sorted(unknown)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    host = machine.describe()
    with tempfile.TemporaryDirectory(prefix="llmgw-defaults-bench-") as tmp:
        parts = measure(args, Path(tmp))
    doc = {"date": date.today().isoformat(), "machine": host, "note": args.note,
           "parts": parts, "load_average_end": list(os.getloadavg())}
    print(report.save_run(doc, args.kind, render).read_text())


if __name__ == "__main__":
    main()
