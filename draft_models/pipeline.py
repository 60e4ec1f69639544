"""``draft train`` end to end: data, training, a self-describing draft folder, a report.

Every stage is resumable: shards already generated are kept, training continues from
its checkpoint, and the draft folder is written last (atomically).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any, Protocol

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import GenerationPlan, TargetGenerator, read_samples
from draft_models.prompts import (
    Prompt,
    bundled_prompts,
    held_out_words,
    ledger_prompts,
    split,
)
from draft_models.registry import fingerprint, write_card
from draft_models.self_prompts import SelfPromptPlan, offline_completer, sample_prompts
from draft_models.train import Trainer, TrainPlan, TrainResult

LAYERS_FILE = "layers.safetensors"


ARCHITECTURES = ("llama", "eagle", "eagle3")


class Reporter(Protocol):
    def stage(self, name: str, total: int) -> None: ...

    def advance(self, done: int, total: int, info: str = "") -> None: ...


@dataclass(frozen=True)
class BuildPlan:
    target_name: str
    target_dir: Path
    work_dir: Path
    out_dir: Path
    num_layers: int = 2
    steps: int = 1200
    prompts: int = 1536
    held_out: int = 64
    max_tokens: int = 256
    ledger_file: Path | None = None
    self_prompts: int = 0  # prompts the target writes itself (draft_models/self_prompts.py)
    init_head: Path | None = None  # EAGLE-3: fine-tune this shipped head instead of a new one
    seed: int = 0
    eval_every: int = 50
    eval_samples: int = 24  # held-out answers scored during training (all of them at the end)
    lr: float = 1e-3
    batch_tokens: int = 2048
    arch: str = "llama"  # "llama": a small Llama; "eagle"/"eagle3": a head on hidden states
    k: int = 2  # EAGLE: drafting steps trained together and measured
    draft_vocab: int = 8192  # EAGLE-3: the target's most written tokens the head drafts

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.prompts < 1 or self.held_out < 1:
            raise ValueError("num_layers, prompts and held_out must be >= 1")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, not {self.arch!r}")
        if self.k < 1 or self.self_prompts < 0:
            raise ValueError("k must be >= 1 and self_prompts >= 0")
        if self.init_head is not None and self.arch != "eagle3":
            raise ValueError("init_head fine-tunes an EAGLE-3 head: arch must be eagle3")

    @classmethod
    def smoke(cls, target_name: str, target_dir: Path, work_dir: Path, out_dir: Path,
              arch: str = "llama") -> BuildPlan:
        """Minutes, not hours: for CI and for trying the pipeline."""
        return cls(target_name, target_dir, work_dir, out_dir, num_layers=1, steps=4,
                   prompts=8, held_out=4, max_tokens=16, eval_every=2, eval_samples=4,
                   batch_tokens=256, arch=arch)


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


def train_draft(plan: BuildPlan, reporter: Reporter) -> tuple[Any, TrainResult]:
    if plan.arch == "eagle3":
        from draft_models.eagle3_build import train_eagle3

        return train_eagle3(plan, reporter)
    if plan.arch == "eagle":
        from draft_models.eagle_build import train_eagle

        return train_eagle(plan, reporter)
    import torch
    from transformers import AutoModelForCausalLM

    from draft_models.architecture import build_from_target, default_init_layers

    target = AutoModelForCausalLM.from_pretrained(str(plan.target_dir), dtype=torch.float32)
    init = default_init_layers(plan.num_layers, int(target.config.num_hidden_layers))
    draft = build_from_target(target, init)
    del target
    train = list(read_samples(plan.work_dir / "train"))
    heldout = list(read_samples(plan.work_dir / "heldout"))
    train_plan = TrainPlan(plan.work_dir / f"checkpoint-{plan.num_layers}l.pt",
                           steps=plan.steps, seed=plan.seed, eval_every=plan.eval_every,
                           lr=plan.lr, batch_tokens=plan.batch_tokens)
    trainer = Trainer(draft, train_plan, pad_id=int(draft.config.pad_token_id or 0))
    reporter.stage("training", plan.steps)
    result = trainer.run(train, heldout[:plan.eval_samples], training_progress(reporter))
    if trainer.best_tensors:
        draft.load_state_dict(trainer.best_tensors, strict=False)
    return draft, result


def write_draft(plan: BuildPlan, draft: Any, result: TrainResult) -> Path:
    """The shipped form: trained tensors (bfloat16) + card + report; re-measured after rounding."""
    if plan.arch == "eagle3":
        from draft_models.eagle3_build import write_eagle3

        return write_eagle3(plan, draft, result)
    if plan.arch == "eagle":
        from draft_models.eagle_build import write_eagle

        return write_eagle(plan, draft, result)
    import torch
    from safetensors.torch import save_file

    from draft_models.architecture import load_draft, trained_tensors
    from draft_models.evaluate import acceptance

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(torch.bfloat16) for k, v in trained_tensors(draft).items()}
    layers_path = plan.out_dir / LAYERS_FILE
    save_file(tensors, str(layers_path))
    shipped = load_draft(plan.target_dir, layers_path, plan.num_layers)
    heldout = list(read_samples(plan.work_dir / "heldout"))
    final = acceptance(shipped, heldout, result.best.k)
    card = _card(plan, result, final, layers_path)
    write_card(plan.out_dir, card)
    (plan.out_dir / "REPORT.md").write_text(render_report(card))
    return plan.out_dir


def _card(
    plan: BuildPlan, result: TrainResult, final: AcceptanceReport, layers: Path
) -> dict[str, Any]:
    target = fingerprint(plan.target_dir)
    return {
        "target": {"name": plan.target_name, **asdict(target)},
        "architecture": {"type": "LlamaForCausalLM", "num_layers": plan.num_layers,
                         "shared_with_target": ["model.embed_tokens", "lm_head"],
                         "trained": ["model.layers", "model.norm"], "stored_dtype": "bfloat16"},
        "data": data_summary(plan),
        "training": {"steps": result.steps, "best_step": result.best_step, "seed": plan.seed,
                     "stopped_early": result.stopped_early, "wall_s": round(result.wall_s),
                     "history": result.history, "machine": platform.machine(),
                     "loss": "CE on greedy token + 0.5 x soft CE on target top-5"},
        "acceptance": {"k": final.k, "rate": final.rate,
                       "mean_accepted_length": final.mean_accepted_length,
                       "by_position": final.rate_by_position(),
                       "measured": "offline, teacher-forced, "
                                   f"{plan.held_out + self_held_out(plan)} held-out prompts"},
        "files": {LAYERS_FILE: hashlib.sha256(layers.read_bytes()).hexdigest()},
    }


def _kind(arch: dict[str, Any]) -> str:
    if arch["type"] == "EagleHead":
        return "EAGLE head (one layer on the target's hidden states) sharing the target's " \
               "embeddings and head"
    if arch["type"] == "Eagle3Head":
        return (f"EAGLE-3 head (one layer on the target's streams after layers "
                f"{', '.join(map(str, arch['aux_layers']))}) with its own "
                f"{arch['draft_vocab']}-token head, sharing the target's embeddings")
    return f"{arch['num_layers']}-layer Llama sharing the target's embeddings and head"


def render_report(card: dict[str, Any]) -> str:
    acc, train = card["acceptance"], card["training"]
    rows = "\n".join(f"| {i + 1} | {rate:.1%} |" for i, rate in enumerate(acc["by_position"]))
    history = "\n".join(f"| {int(h['step'])} | {h['acceptance']:.1%} | "
                        f"{h['mean_accepted_length']:.2f} |" for h in train["history"])
    written = card["data"].get("self_prompts", 0)
    start = train.get("init_from", {}).get("head")
    return (
        f"# Draft for {card['target']['name']}\n\n"
        f"{_kind(card['architecture'])}; {card['data']['prompts']} prompts"
        f"{f' ({written} written by the target itself)' if written else ''}"
        f"{f', fine-tuned from {start}' if start else ''}, "
        f"{card['data']['answer_tokens']} answer tokens; {train['steps']} steps "
        f"(best {train['best_step']}), {train['wall_s']} s.\n\n"
        f"Held-out acceptance (k={acc['k']}): {acc['rate']:.1%}, "
        f"{acc['mean_accepted_length']:.2f} tokens per target forward ({acc['measured']}).\n\n"
        f"| position | accepted |\n| --- | --- |\n{rows}\n\n"
        f"| step | acceptance | tokens/forward |\n| --- | --- | --- |\n{history}\n"
    )
