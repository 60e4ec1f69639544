"""``draft train --arch eagle``: train, ship and install an EAGLE head for a target.

The shipped form is the head's own tensors (``eagle.safetensors``, bfloat16, ~8 MB) plus
the card and report; the embeddings and output head are the target's, so ``draft
install`` only writes a config and the tensors (in float32) into a folder vLLM serves
with ``method: eagle``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import Sample
from draft_models.eagle import EagleHead, init_from_target, write_vllm_folder
from draft_models.eagle_train import (
    EagleObjective,
    HeadLoss,
    eagle_acceptance,
    feature_table,
    loaded_target,
    target_features,
)
from draft_models.head_layers import HeadShape
from draft_models.kinds import EAGLE
from draft_models.losses import VocabSubset
from draft_models.plan import BuildPlan, Distilled, Recipe, Reporter, Training

HELDOUT_FEATURES = "eagle-features-heldout-all.pt"


def start(plan: BuildPlan, reporter: Reporter, data: Distilled) -> Training:
    target, frozen = loaded_target(plan.target_dir)
    reporter.stage("target hidden states", 2)
    train_feats = target_features(target, data.train, plan.work_dir / "eagle-features-train.pt")
    reporter.advance(1, 2)
    held_feats = target_features(target, data.heldout, plan.work_dir / HELDOUT_FEATURES)
    reporter.advance(2, 2)
    head = EagleHead(HeadShape.of(target.config))
    init_from_target(head, target)
    features = feature_table(data.train + data.heldout, train_feats + held_feats)
    subset = VocabSubset.from_samples(data.train, frozen.embed.shape[0])
    objective = EagleObjective(head, features, frozen, HeadLoss(passes=plan.k), subset)
    return Training(objective, "checkpoint-eagle.pt", plan.k, "training (EAGLE head)")


def load_head(target_dir: Path, tensors_file: Path) -> EagleHead:
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    config = LlamaConfig(**json.loads((target_dir / "config.json").read_text()))
    head = EagleHead(HeadShape.of(config))
    head.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(tensors_file)).items()})
    return head


def ship(plan: BuildPlan, head: torch.nn.Module, heldout: list[Sample],
         k: int) -> tuple[Path, AcceptanceReport]:
    """Ship the head in bfloat16 and re-measure acceptance after the rounding."""
    from safetensors.torch import save_file

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / EAGLE.weights_file
    save_file({name: t.detach().to(torch.bfloat16).contiguous()
               for name, t in head.state_dict().items()}, str(path))
    shipped = load_head(plan.target_dir, path)
    target, frozen = loaded_target(plan.target_dir)
    feats = target_features(target, heldout, plan.work_dir / HELDOUT_FEATURES)  # cached
    return path, eagle_acceptance(shipped, heldout, feats, frozen, k)


def architecture(plan: BuildPlan, head: torch.nn.Module) -> dict[str, Any]:
    return {"type": EAGLE.arch_type, "method": EAGLE.name, "num_layers": 1,
            "shared_with_target": ["model.embed_tokens", "lm_head"],
            "trained": ["fc", "layers.0"], "stored_dtype": "bfloat16",
            "reads": "target's final hidden state"}


def materialize(shipped: Path, card: Mapping[str, Any], target_dir: Path, dest: Path) -> None:
    write_vllm_folder(load_head(target_dir, shipped / EAGLE.weights_file), target_dir, dest)


RECIPE = Recipe(EAGLE, start, ship, architecture, materialize,
                loss="over {k} unrolled drafting steps: CE on greedy token + 0.5 x soft CE "
                     "on target top-5 + smooth-L1 to target hidden state",
                measured="exact drafting")
