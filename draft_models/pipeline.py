"""``draft train`` end to end: data, training, a self-describing draft folder, a report.

Every stage is resumable: shards already generated are kept, training continues from
its checkpoint, and the draft folder is written last (atomically).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import asdict
from itertools import zip_longest
from pathlib import Path
from typing import Any

import torch

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import GenerationPlan, TargetGenerator, read_samples
from draft_models.kinds import kind_of_card
from draft_models.plan import BuildPlan, Distilled, Recipe, Reporter
from draft_models.prompts import (
    Prompt,
    bundled_prompts,
    held_out_words,
    ledger_prompts,
    split,
)
from draft_models.recipes import recipe_for
from draft_models.registry import fingerprint, read_card, write_card
from draft_models.self_prompts import SelfPromptPlan, offline_completer, sample_prompts
from draft_models.train import Trainer, TrainPlan, TrainResult


def _prompts(plan: BuildPlan, written: list[Prompt]) -> tuple[list[Prompt], list[Prompt]]:
    """Train: ledger prompts, the target's own, bundled ones. Held out: bundled ones and,
    alternating with them, the target's own beyond ``plan.self_prompts``."""
    train, held = split(bundled_prompts(plan.seed), plan.held_out)
    train = written[:plan.self_prompts] + train[:plan.prompts]
    if plan.ledger_file is not None:
        train = ledger_prompts(plan.ledger_file) + train
    mixed = [p for pair in zip_longest(written[plan.self_prompts:], held) for p in pair if p]
    return train, mixed


def self_held_out(plan: BuildPlan) -> int:
    """How many of the target's own prompts are held out (none when it writes none)."""
    return plan.held_out // 2 if plan.self_prompts else 0


def _self_prompts(plan: BuildPlan, generator: TargetGenerator,
                  reporter: Reporter) -> list[Prompt]:
    """The target's own prompts, sampled once and kept in the work folder (resumable)."""
    count = plan.self_prompts + self_held_out(plan)
    if count == 0:
        return []
    path = plan.work_dir / f"self-prompts-{count}-seed{plan.seed}.json"
    if not path.is_file():
        reporter.stage("prompts the target writes", count)
        sampling = SelfPromptPlan(plan.target_dir, count, seed=plan.seed,
                                  exclude=held_out_words())
        sampled = sample_prompts(sampling, offline_completer(generator.llm(), sampling),
                                 reporter.advance)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".partial").write_text(json.dumps([p.text for p in sampled]))
        path.with_suffix(".partial").rename(path)
    return [Prompt(text, source="self") for text in json.loads(path.read_text())]


def generate_data(plan: BuildPlan, reporter: Reporter) -> None:
    generator = TargetGenerator(GenerationPlan(plan.target_dir, max_tokens=plan.max_tokens,
                                               chunk=64))
    try:
        train, held = _prompts(plan, _self_prompts(plan, generator, reporter))
        reporter.stage("target answers (held-out)", 1)
        generator.run(plan.work_dir / "heldout", held, reporter.advance)
        reporter.stage("target answers (train)", 1)
        generator.run(plan.work_dir / "train", train, reporter.advance)
    finally:
        generator.close()


def training_progress(reporter: Reporter) -> Callable[[int, int, dict[str, float]], None]:
    """A trainer's progress callback that shows loss and held-out acceptance on a bar."""

    def progress(step: int, total: int, metrics: dict[str, float]) -> None:
        info = f"loss {metrics['loss']:.3f}"
        if "acceptance" in metrics:
            info += f"  held-out acceptance {metrics['acceptance']:.1%}"
        reporter.advance(step, total, info)

    return progress


def data_summary(plan: BuildPlan) -> dict[str, Any]:
    """The card's ``data`` section: what the draft was distilled on."""
    samples = list(read_samples(plan.work_dir / "train"))
    return {"prompts": len(samples), "answer_tokens": sum(len(s.output_ids) for s in samples),
            "max_tokens": plan.max_tokens, "ledger_file": str(plan.ledger_file or ""),
            "self_prompts": plan.self_prompts,
            "generator": "vLLM greedy, float32"}


def train_draft(plan: BuildPlan, reporter: Reporter) -> tuple[torch.nn.Module, TrainResult]:
    """Train the plan's kind of draft on the data; it ends at its best weights."""
    data = Distilled.read(plan.work_dir)
    training = recipe_for(plan.kind).start(plan, reporter, data)
    train_plan = TrainPlan(plan.work_dir / training.checkpoint, steps=plan.steps,
                           seed=plan.seed, eval_every=plan.eval_every, lr=plan.lr,
                           batch_tokens=plan.batch_tokens, k=training.k)
    trainer = Trainer(training.objective, train_plan)
    reporter.stage(training.stage, plan.steps)
    result = trainer.run(data.train, data.heldout[:plan.eval_samples],
                         training_progress(reporter))
    trainer.restore_best()
    return training.objective.model, result


def write_draft(plan: BuildPlan, draft: torch.nn.Module, result: TrainResult) -> Path:
    """The shipped form: trained tensors (bfloat16) + card + report; re-measured after rounding."""
    recipe = recipe_for(plan.kind)
    heldout = list(read_samples(plan.work_dir / "heldout"))
    weights, final = recipe.ship(plan, draft, heldout, result.best.k)
    card = _card(plan, recipe, draft, (result, final), weights)
    write_card(plan.out_dir, card)
    (plan.out_dir / "REPORT.md").write_text(render_report(card))
    return plan.out_dir


def _card(plan: BuildPlan, recipe: Recipe, draft: torch.nn.Module,
          measured: tuple[TrainResult, AcceptanceReport], weights: Path) -> dict[str, Any]:
    result, final = measured
    return {
        "target": {"name": plan.target_name, **asdict(fingerprint(plan.target_dir))},
        "architecture": recipe.architecture(plan, draft),
        "data": data_summary(plan),
        "training": {"steps": result.steps, "best_step": result.best_step, "seed": plan.seed,
                     "stopped_early": result.stopped_early, "wall_s": round(result.wall_s),
                     "history": result.history, "machine": platform.machine(),
                     "init_from": _init_from(plan), "loss": recipe.loss.format(k=plan.k)},
        "acceptance": {"k": final.k, "rate": final.rate,
                       "mean_accepted_length": final.mean_accepted_length,
                       "by_position": final.rate_by_position(),
                       "measured": f"offline, {recipe.measured}, "
                                   f"{plan.held_out + self_held_out(plan)} held-out prompts"},
        "files": {weights.name: hashlib.sha256(weights.read_bytes()).hexdigest()},
    }


def _init_from(plan: BuildPlan) -> dict[str, str]:
    """The head a fine-tune started from: its folder name and its card's file hashes."""
    if plan.init_head is None:
        return {}
    card = read_card(plan.init_head)
    return {"head": plan.init_head.name, **{k: str(v) for k, v in card["files"].items()},
            "its_prompts": str(card["data"]["prompts"]),
            "its_steps": str(card["training"]["steps"]),
            "its_acceptance": f"{card['acceptance']['rate']:.4f}"}


def render_report(card: dict[str, Any]) -> str:
    acc, train = card["acceptance"], card["training"]
    rows = "\n".join(f"| {i + 1} | {rate:.1%} |" for i, rate in enumerate(acc["by_position"]))
    history = "\n".join(f"| {int(h['step'])} | {h['acceptance']:.1%} | "
                        f"{h['mean_accepted_length']:.2f} |" for h in train["history"])
    written = card["data"].get("self_prompts", 0)
    start = train.get("init_from", {}).get("head")
    return (
        f"# Draft for {card['target']['name']}\n\n"
        f"{kind_of_card(card).describe(card['architecture'])}; {card['data']['prompts']} prompts"
        f"{f' ({written} written by the target itself)' if written else ''}"
        f"{f', fine-tuned from {start}' if start else ''}, "
        f"{card['data']['answer_tokens']} answer tokens; {train['steps']} steps "
        f"(best {train['best_step']}), {train['wall_s']} s.\n\n"
        f"Held-out acceptance (k={acc['k']}): {acc['rate']:.1%}, "
        f"{acc['mean_accepted_length']:.2f} tokens per target forward ({acc['measured']}).\n\n"
        f"| position | accepted |\n| --- | --- |\n{rows}\n\n"
        f"| step | acceptance | tokens/forward |\n| --- | --- | --- |\n{history}\n"
    )
