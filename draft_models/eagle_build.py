"""``draft train --arch eagle``: train, ship and install an EAGLE head for a target.

The shipped form is the head's own tensors (``eagle.safetensors``, bfloat16, ~8 MB) plus
the card and report; the embeddings and output head are the target's, so ``draft
install`` only writes a config and the tensors (in float32) into a folder vLLM serves
with ``method: eagle``.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import read_samples
from draft_models.registry import fingerprint, read_card, write_card
from draft_models.train import TrainPlan, TrainResult

if TYPE_CHECKING:
    from draft_models.eagle import EagleHead
    from draft_models.eagle_train import EaglePlan, EagleTrainer
    from draft_models.pipeline import BuildPlan, Reporter

EAGLE_FILE = "eagle.safetensors"
ARCH_TYPE = "EagleHead"
HELDOUT_FEATURES = "eagle-features-heldout-all.pt"


def loaded_target(target_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from draft_models.eagle_train import Frozen

    target = AutoModelForCausalLM.from_pretrained(str(target_dir), dtype=torch.float32)
    frozen = Frozen(target.model.embed_tokens.weight.detach(), target.lm_head.weight.detach())
    return target, frozen


def train_eagle(plan: BuildPlan, reporter: Reporter) -> tuple[EagleHead, TrainResult]:
    from draft_models.eagle import EagleHead, init_from_target
    from draft_models.eagle_train import EagleTrainer, target_features
    from draft_models.head_layers import HeadShape

    target, frozen = loaded_target(plan.target_dir)
    train = list(read_samples(plan.work_dir / "train"))
    heldout = list(read_samples(plan.work_dir / "heldout"))
    reporter.stage("target hidden states", 2)
    train_feats = target_features(target, train, plan.work_dir / "eagle-features-train.pt")
    reporter.advance(1, 2)
    held_feats = target_features(target, heldout, plan.work_dir / HELDOUT_FEATURES)
    reporter.advance(2, 2)
    head = EagleHead(HeadShape.of(target.config))
    init_from_target(head, target)
    del target
    eagle_plan = head_plan(plan, "checkpoint-eagle.pt")
    trainer = EagleTrainer(head, frozen, eagle_plan)
    reporter.stage("training (EAGLE head)", plan.steps)
    result = run_trainer(trainer, plan, reporter, (train, train_feats, heldout, held_feats))
    return head, result


def head_plan(plan: BuildPlan, checkpoint: str) -> EaglePlan:
    """The trainer's plan for a head: the build's steps and data sizes, ``k`` passes."""
    from draft_models.eagle_train import EaglePlan

    train_plan = TrainPlan(plan.work_dir / checkpoint, steps=plan.steps, seed=plan.seed,
                           eval_every=plan.eval_every, lr=plan.lr,
                           batch_tokens=plan.batch_tokens, k=plan.k)
    return EaglePlan(train_plan, passes=plan.k)


def run_trainer(trainer: EagleTrainer, plan: BuildPlan, reporter: Reporter,
                data: tuple[list[Any], list[Any], list[Any], list[Any]]) -> TrainResult:
    """Train on (train, features, held-out, features); the head ends at its best weights."""
    from draft_models.pipeline import training_progress

    train, train_feats, heldout, held_feats = data
    n = plan.eval_samples
    result = trainer.run(train, train_feats, heldout[:n], held_feats[:n],
                         training_progress(reporter))
    if trainer.best_state:
        trainer.head.load_state_dict(trainer.best_state)
    return result


def load_head(target_dir: Path, tensors_file: Path) -> EagleHead:
    import json

    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    from draft_models.eagle import EagleHead
    from draft_models.head_layers import HeadShape

    config = LlamaConfig(**json.loads((target_dir / "config.json").read_text()))
    head = EagleHead(HeadShape.of(config))
    head.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(tensors_file)).items()})
    return head


def write_eagle(plan: BuildPlan, head: EagleHead, result: TrainResult) -> Path:
    """Ship the head in bfloat16 and re-measure acceptance after the rounding."""
    import torch
    from safetensors.torch import save_file

    from draft_models.eagle_train import eagle_acceptance, target_features

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / EAGLE_FILE
    save_file({k: v.detach().to(torch.bfloat16).contiguous()
               for k, v in head.state_dict().items()}, str(path))
    shipped = load_head(plan.target_dir, path)
    target, frozen = loaded_target(plan.target_dir)
    heldout = list(read_samples(plan.work_dir / "heldout"))
    feats = target_features(target, heldout, plan.work_dir / HELDOUT_FEATURES)  # cached
    final = eagle_acceptance(shipped, heldout, feats, frozen, result.best.k)
    card = _card(plan, result, final, path)
    write_card(plan.out_dir, card)
    from draft_models.pipeline import render_report

    (plan.out_dir / "REPORT.md").write_text(render_report(card))
    return plan.out_dir


def _card(plan: BuildPlan, result: TrainResult, final: AcceptanceReport,
          path: Path) -> dict[str, Any]:
    architecture = {"type": ARCH_TYPE, "method": "eagle", "num_layers": 1,
                    "shared_with_target": ["model.embed_tokens", "lm_head"],
                    "trained": ["fc", "layers.0"], "stored_dtype": "bfloat16",
                    "reads": "target's final hidden state"}
    return head_card(plan, architecture, result, final, path,
                     "0.5 x soft CE on target top-5 + smooth-L1 to target hidden state")


def head_card(plan: BuildPlan, architecture: dict[str, Any], result: TrainResult,
              final: AcceptanceReport, path: Path, loss: str) -> dict[str, Any]:
    """A head's card: target, architecture, data, training, acceptance and file hash."""
    from draft_models.pipeline import data_summary, self_held_out

    return {
        "target": {"name": plan.target_name, **asdict(fingerprint(plan.target_dir))},
        "architecture": architecture,
        "data": data_summary(plan),
        "training": {"steps": result.steps, "best_step": result.best_step, "seed": plan.seed,
                     "stopped_early": result.stopped_early, "wall_s": round(result.wall_s),
                     "history": result.history, "machine": platform.machine(),
                     "init_from": _init_from(plan),
                     "loss": f"over {plan.k} unrolled drafting steps: CE on greedy token + "
                             + loss},
        "acceptance": {"k": final.k, "rate": final.rate,
                       "mean_accepted_length": final.mean_accepted_length,
                       "by_position": final.rate_by_position(),
                       "measured": "offline, exact drafting, "
                                   f"{plan.held_out + self_held_out(plan)} held-out prompts"},
        "files": {path.name: hashlib.sha256(path.read_bytes()).hexdigest()},
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


def materialize_eagle(shipped: Path, target_dir: Path, dest: Path) -> None:
    from draft_models.eagle import write_vllm_folder

    head = load_head(target_dir, shipped / EAGLE_FILE)
    write_vllm_folder(head, target_dir, dest)
