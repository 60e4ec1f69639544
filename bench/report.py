"""The result files: ``<date>-<machine>.json``, a Markdown table, PNG plots, README block."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from bench import plots
from bench.machine import describe
from bench.plan import Section

METHOD = (
    "Every request streams a chat completion with greedy sampling (temperature 0), "
    "max_tokens={max_tokens}, and prompts that ask for long answers; the API has no "
    "ignore_eos, so answers may end early: mean tokens per request is reported.",
    "Tokens are the completion_tokens of the server's usage chunk (never re-tokenised text).",
    "tok/s (aggregate) = completion tokens of all requests in a level / wall time from the "
    "first request sent to the last one finished (so queueing and TTFT count against it).",
    "tok/s per stream = mean over requests of (tokens - 1) / (last - first content chunk).",
    "TTFT = request sent -> first chunk with text; ITL = gap between content chunks.",
    "The load generator runs on the same machine and shares its CPU with the server.",
)
RESULTS = Path(__file__).resolve().parent / "results"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def section_json(section: Section) -> dict[str, Any]:
    body = dataclasses.asdict(section)
    body.pop("name")
    body["columns"] = [list(pair) for pair in section.columns]
    body["rows"] = [dict(row) for row in section.rows]
    return body


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if key.endswith("share") or key == "acceptance":
            return f"{value:.0%}"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def section_markdown(title: str, body: Mapping[str, Any]) -> list[str]:
    columns = body["columns"]
    lines = [f"### {title}", ""]
    if body["rows"]:
        lines.append("| " + " | ".join(header for _, header in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in body["rows"]:
            lines.append("| " + " | ".join(_cell(k, row.get(k)) for k, _ in columns) + " |")
        lines.append("")
    lines += [f"- {note}" for note in body.get("notes", [])]
    return [*lines, ""]


def markdown(doc: Mapping[str, Any], plot_files: list[str]) -> str:
    machine = doc["machine"]
    lines = [
        f"# Benchmark {doc['date']} on {machine['name']}", "",
        f"Machine: {machine['cpu']}, {machine['cores_usable']} usable cores, "
        f"{machine['memory_gib']} GiB; vLLM {machine['vllm']}, torch {machine['torch']}, "
        f"commit {machine['git_commit']}. Load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in doc['load_average_end'])}.", "",
    ]
    if doc.get("note"):
        lines += [f"**Note:** {doc['note']}", ""]
    if doc.get("quick"):
        lines += ["**Quick mode** (smoke test): tiny sizes, numbers are meaningless.", ""]
    lines += ["How the numbers are computed:", ""] + [f"- {m}" for m in doc["method"]] + [""]
    for body in doc["sections"].values():
        lines += section_markdown(body["title"], body)
    lines += [f"![{name}]({name})" for name in plot_files]
    return "\n".join(lines).rstrip() + "\n"


def save_run(doc: dict[str, Any], kind: str, render: Callable[[dict[str, Any]], str]) -> Path:
    """One benchmark's run as ``bench/results/<date>-<machine>-<kind>.{json,md}``; returns
    the Markdown file (the committed record of the run, with its machine). A second run of
    the same day, machine and kind gets ``-2``, ``-3``...: a committed record is never
    overwritten."""
    base = f"{doc['date']}-{doc['machine']['name']}-{kind}"
    stem, count = RESULTS / base, 1
    while stem.with_suffix(".json").exists() or stem.with_suffix(".md").exists():
        count += 1
        stem = RESULTS / f"{base}-{count}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    markdown_file = stem.with_suffix(".md")
    markdown_file.write_text(render(doc))
    return markdown_file


def start_run(args: argparse.Namespace) -> dict[str, Any]:
    """A run's record before it runs: the date, the machine (its load now), the arguments."""
    return {"date": date.today().isoformat(), "machine": describe(),
            "args": {k: str(v) for k, v in vars(args).items()}}


def finish_run(doc: dict[str, Any], kind: str, render: Callable[[dict[str, Any]], str]) -> Path:
    """The load average at the end, then ``save_run``."""
    doc["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    written = save_run(doc, kind, render)
    print(f"wrote {written} and its .json")
    return written


def write(doc: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    """Write JSON, Markdown and plots under ``folder``; returns every file written."""
    folder.mkdir(parents=True, exist_ok=True)
    images = plots.render(doc, folder, stem)
    doc["plots"] = [image.name for image in images]
    json_path = folder / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md_path = folder / f"{stem}.md"
    md_path.write_text(markdown(doc, doc["plots"]))
    return [json_path, md_path, *images]


def readme_block(doc: Mapping[str, Any], results_dir: str, sections: tuple[str, ...]) -> str:
    """The README's benchmark block: the chosen sections' tables and the plots."""
    stem = f"{doc['date']}-{doc['machine']['name']}" + (f"-{doc['kind']}" if doc.get("kind")
                                                        else "")
    lines = [README_START,
             f"Latest run: [{stem}]({results_dir}/{stem}.md) (`llm-gateway bench`)."
             + (f" {doc['note']}" if doc.get("note") else ""), ""]
    for name in sections:
        if name in doc["sections"]:
            lines += section_markdown(doc["sections"][name]["title"], doc["sections"][name])
    lines += [f"![{name}]({results_dir}/{name})" for name in doc.get("plots", [])]
    return "\n".join([*lines, README_END])


def update_readme(readme: Path, block: str) -> None:
    """Replace the marked block (or append a ``## Benchmarks`` section holding it)."""
    text = readme.read_text() if readme.is_file() else ""
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + "## Benchmarks\n\n" + block
    readme.write_text(text.rstrip() + "\n")
