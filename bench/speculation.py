"""The speculation table: none / n-gram / trained draft, batch 1 and 16 concurrent.

Offline vLLM (the engine the gateway embeds), float32, eager (``--compiled``: vLLM's
torch.compile mode), greedy, both cores.
Each configuration runs in its own process, one after another (one engine at a time).
Per configuration: chat prompts one at a time (batch 1), prompts that repeat their
input one at a time, and 16 chat prompts at once. Outputs are compared token for token
with speculation off, and acceptance comes from vLLM's per-request counters.

    python -m bench.speculation            # every configuration -> bench/results/
    python -m bench.speculation --only ngram --out /tmp/ngram.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.speculation_report import compare_outputs, render_markdown

REPO = Path(__file__).resolve().parent.parent
MAX_TOKENS = 128
CONCURRENT_REPEATS = 3  # the 16-at-once batch is short (~8 s): pool three runs against noise
CHAT = (  # topics kept out of draft_models/data/prompt_set.json: held-out for the draft
    "What are the main causes of earthquakes?",
    "Give me a simple recipe for pancakes.",
    "Explain how a bicycle gear system works.",
    "Write a short poem about autumn leaves.",
    "What is the difference between weather and climate?",
    "How do I start learning to draw?",
    "Why do cats purr?",
    "Describe the planet Jupiter.",
    "What are some tips for a good night's sleep when travelling?",
    "Explain what a neural network is to a beginner.",
    "How does a refrigerator keep food cold?",
    "Write a short story about a lost umbrella.",
    "What should I pack for a camping trip?",
    "Explain the rules of tennis briefly.",
    "What is a rainbow and how does it form?",
    "Give me three ideas for a birthday party.",
)
_PASSAGE = ("The committee met on Tuesday to review the budget. Members agreed to fund the new "
            "library wing, postpone the road repairs until spring, and hire two more teachers "
            "for the primary school. The next meeting is scheduled for the first Monday of "
            "March, when the final plans will be presented to the public.")
REPEAT = (
    f"Repeat the following text exactly, word for word:\n\n{_PASSAGE}",
    f"Copy this paragraph without changing anything:\n\n{_PASSAGE}",
    "Repeat exactly: def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n",
    "Write this list again in the same order: apples, pears, plums, cherries, grapes, "
    "melons, lemons, limes, figs, dates, kiwis, mangos.",
)


@dataclass(frozen=True)
class BenchConfig:
    name: str
    speculation: dict[str, Any]  # SpeculationConfig fields


def configs(draft_dir: Path, eagle_dir: Path, eagle3_dir: Path) -> list[BenchConfig]:
    draft = {"method": "draft_model", "draft_path": str(draft_dir), "num_speculative_tokens": 3}
    eagle = {"method": "eagle", "draft_path": str(eagle_dir), "num_speculative_tokens": 2}
    eagle3 = {"method": "eagle3", "draft_path": str(eagle3_dir), "num_speculative_tokens": 2}
    ngram = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2,
             "prompt_lookup_max": 4}
    return [
        BenchConfig("none", {"method": "none"}),
        BenchConfig("ngram", ngram),
        BenchConfig("ngram-adaptive", {**ngram, "max_batch_size": 4}),
        BenchConfig("draft", draft),
        BenchConfig("draft-adaptive", {**draft, "max_batch_size": 4}),
        BenchConfig("eagle", eagle),
        BenchConfig("eagle-adaptive", {**eagle, "max_batch_size": 4}),
        BenchConfig("eagle3", eagle3),
        BenchConfig("eagle3-k1", {**eagle3, "num_speculative_tokens": 1}),
        BenchConfig("eagle3-k1-adaptive", {**eagle3, "num_speculative_tokens": 1,
                                           "max_batch_size": 4}),
        BenchConfig("eagle3-adaptive", {**eagle3, "max_batch_size": 4}),
        BenchConfig("eagle3-adaptive-fill", {**eagle3, "max_batch_size": 4,
                                             "draft_under_load": "fill"}),
    ]


def _llm(model_dir: Path, speculation: dict[str, Any], eager: bool = True) -> Any:
    from engine.config import CpuConfig, EngineConfig, SpeculationConfig

    spec = {**speculation}
    if spec.get("draft_path"):
        spec["draft_path"] = Path(spec["draft_path"])
    config = EngineConfig("bench", model_dir, max_num_seqs=32, enforce_eager=eager,
                          speculation=SpeculationConfig(**spec), cpu=CpuConfig(kv_cache_gib=1))
    os.environ.update(config.cpu.environment())
    from vllm import LLM

    kwargs = config.engine_args_kwargs()
    kwargs.pop("disable_log_stats")
    return LLM(**kwargs)


def _chat_ids(model_dir: Path, texts: tuple[str, ...]) -> list[list[int]]:
    from draft_models.datagen import render_prompts
    from draft_models.prompts import Prompt

    return render_prompts(model_dir, [Prompt(t) for t in texts])


def _run(llm: Any, prompts: list[list[int]], together: bool) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    batch = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    started = time.perf_counter()
    if together:
        outputs = llm.generate(batch, params, use_tqdm=False)
    else:
        outputs = [llm.generate([p], params, use_tqdm=False)[0] for p in batch]
    wall = time.perf_counter() - started
    tokens = [list(o.outputs[0].token_ids) for o in outputs]
    return {"wall_s": wall, "tokens": sum(map(len, tokens)), "outputs": tokens,
            "tok_per_s": sum(map(len, tokens)) / wall, **_acceptance(outputs)}


def _run_repeated(llm: Any, prompts: list[list[int]], repeats: int) -> dict[str, Any]:
    """``repeats`` runs of all prompts at once, pooled: tok/s over the summed wall time."""
    runs = [_run(llm, prompts, together=True) for _ in range(repeats)]
    assert all(r["outputs"] == runs[0]["outputs"] for r in runs), "greedy output changed"
    wall = sum(r["wall_s"] for r in runs)
    return {**runs[0], "wall_s": wall, "tokens": sum(r["tokens"] for r in runs),
            "tok_per_s": sum(r["tokens"] for r in runs) / wall, "repeats": repeats,
            "tok_per_s_each": [r["tok_per_s"] for r in runs]}


def _acceptance(outputs: list[Any]) -> dict[str, Any]:
    drafted = accepted = steps = 0
    per_pos: list[int] = []
    for out in outputs:
        m = out.outputs[0].spec_decode_metrics
        if m is None:
            continue
        drafted += m.num_draft_tokens
        steps += sum(m.histogram)
        per_pos.extend([0] * (len(m.histogram) - 1 - len(per_pos)))
        for j, count in enumerate(m.histogram):
            accepted += j * count
            for pos in range(j):
                per_pos[pos] += count
    if not drafted:
        return {}
    return {"drafted": drafted, "accepted": accepted, "acceptance": accepted / drafted,
            "accepted_by_position": [c / steps for c in per_pos]}


def measure_one(model_dir: Path, config: BenchConfig, eager: bool = True) -> dict[str, Any]:
    llm = _llm(model_dir, config.speculation, eager)
    chat, repeat = _chat_ids(model_dir, CHAT), _chat_ids(model_dir, REPEAT)
    _run(llm, chat[:2], together=True)  # warm-up
    result = {
        "config": config.name, "speculation": config.speculation,
        "chat_batch1": _run(llm, chat[:8], together=False),
        "repeat_batch1": _run(llm, repeat, together=False),
        "chat_concurrent16": _run_repeated(llm, chat, CONCURRENT_REPEATS),
    }
    llm.llm_engine.engine_core.shutdown()
    return result


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "node": platform.node(),
            "load_avg_1m": os.getloadavg()[0]}


def _child(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.speculation", "--only", name, "--out", str(out),
           "--model", str(args.model), "--draft", str(args.draft), "--eagle", str(args.eagle),
           "--eagle3", str(args.eagle3)] + (["--compiled"] if args.compiled else [])
    subprocess.run(cmd, cwd=REPO, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    cache = Path.home() / ".cache" / "llm-gateway" / "models"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=cache / "smollm2-135m-instruct")
    parser.add_argument("--draft", type=Path, default=cache / "smollm2-135m-instruct-draft-2l")
    parser.add_argument("--eagle", type=Path,
                        default=cache / "smollm2-135m-instruct-eagle")
    parser.add_argument("--eagle3", type=Path,
                        default=cache / "smollm2-135m-instruct-eagle3")
    parser.add_argument("--compiled", action="store_true",
                        help="torch.compile the models (vLLM's default) instead of eager")
    parser.add_argument("--only", help="run one configuration in this process")
    parser.add_argument("--configs", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reuse", help="comma-separated configurations to read from an "
                        "earlier run's /tmp/spec-bench[-compiled]-<name>.json instead of "
                        "measuring")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    chosen = {c.name: c for c in configs(args.draft, args.eagle, args.eagle3)}
    if args.only:
        args.out.write_text(json.dumps(measure_one(args.model, chosen[args.only],
                                                   eager=not args.compiled)))
        return
    names = args.configs.split(",") if args.configs else list(chosen)
    before = machine()
    reuse = set(args.reuse.split(",")) if args.reuse else set()
    mode = "-compiled" if args.compiled else ""
    results = [
        json.loads(Path(f"/tmp/spec-bench{mode}-{n}.json").read_text()) if n in reuse
        else _child(n, args, Path(f"/tmp/spec-bench{mode}-{n}.json"))
        for n in names
    ]
    compare_outputs(results)
    report = {"date": date.today().isoformat(), "machine": before,
              "mode": "compiled" if args.compiled else "eager",
              "load_avg_1m_end": os.getloadavg()[0], "max_tokens": MAX_TOKENS,
              "results": results}
    stem = REPO / "bench" / "results" / \
        f"{date.today().isoformat()}-{platform.node()}-speculation{mode}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(render_markdown(report))
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
