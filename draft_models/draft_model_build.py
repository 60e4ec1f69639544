"""``draft train --arch draft_model``: a small Llama draft, shipped and installed.

The draft copies evenly spaced target layers (first and last included) and trains them
with the final norm; it ships as those tensors (``layers.safetensors``, bfloat16) plus
card and report, and ``draft install`` re-ties them to the target's own embeddings and
head in a full float32 folder vLLM serves with ``method: draft_model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from draft_models.acceptance import AcceptanceReport
from draft_models.architecture import (
    build_from_target,
    default_init_layers,
    load_draft,
    trained_tensors,
    write_hf_folder,
)
from draft_models.datagen import Sample
from draft_models.draft_model_train import DraftModelObjective
from draft_models.evaluate import acceptance
from draft_models.kinds import DRAFT_MODEL
from draft_models.plan import BuildPlan, Distilled, Recipe, Reporter, Training

MEASURED_K = 4  # draft tokens per step the small draft is measured at (``--k`` is for heads)


def start(plan: BuildPlan, reporter: Reporter, data: Distilled) -> Training:
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(str(plan.target_dir), dtype=torch.float32)
    init = default_init_layers(plan.num_layers, int(target.config.num_hidden_layers))
    draft = build_from_target(target, init)
    objective = DraftModelObjective.on(draft, data.train, int(draft.config.pad_token_id or 0))
    return Training(objective, f"checkpoint-{plan.num_layers}l.pt", MEASURED_K, "training")


def ship(plan: BuildPlan, draft: torch.nn.Module, heldout: list[Sample],
         k: int) -> tuple[Path, AcceptanceReport]:
    from safetensors.torch import save_file

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.to(torch.bfloat16) for name, t in trained_tensors(draft).items()}
    path = plan.out_dir / DRAFT_MODEL.weights_file
    save_file(tensors, str(path))
    shipped = load_draft(plan.target_dir, path, plan.num_layers)
    return path, acceptance(shipped, heldout, k)


def architecture(plan: BuildPlan, draft: torch.nn.Module) -> dict[str, Any]:
    return {"type": DRAFT_MODEL.arch_type, "num_layers": plan.num_layers,
            "shared_with_target": ["model.embed_tokens", "lm_head"],
            "trained": ["model.layers", "model.norm"], "stored_dtype": "bfloat16"}


def materialize(shipped: Path, card: Mapping[str, Any], target_dir: Path, dest: Path) -> None:
    num_layers = int(card["architecture"]["num_layers"])
    draft = load_draft(target_dir, shipped / DRAFT_MODEL.weights_file, num_layers)
    write_hf_folder(draft, target_dir, dest)


RECIPE = Recipe(DRAFT_MODEL, start, ship, architecture, materialize,
                loss="CE on greedy token + 0.5 x soft CE on target top-5",
                measured="teacher-forced")
