"""``draft train --arch eagle3``: train, ship and install an EAGLE-3 head for a target.

The shipped form is the head's own tensors (``eagle3.safetensors``: bfloat16, ``d2t``
as int64), card and report; the embeddings are the target's, so ``draft install``
writes a config and the tensors (float32) into a folder vLLM serves with ``method:
eagle3``. A build may start from a shipped head (``--init-from``): its weights and its
draft vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import Sample
from draft_models.eagle3 import (
    Eagle3Head,
    Eagle3Shape,
    draft_vocabulary,
    init_from_target,
    write_vllm_folder,
)
from draft_models.eagle3_train import Eagle3Objective, aux_features, eagle3_acceptance
from draft_models.eagle_train import HeadLoss, feature_table, loaded_target
from draft_models.head_layers import HeadShape
from draft_models.kinds import EAGLE3
from draft_models.plan import BuildPlan, Distilled, Recipe, Reporter, Training


def default_aux_layers(num_layers: int) -> tuple[int, ...]:
    """A low, a middle and the last residual stream (after that many target layers)."""
    return (2, num_layers // 2, num_layers)


def _features(plan: BuildPlan, target: Any, layers: tuple[int, ...], split: str,
              samples: list[Sample]) -> list[torch.Tensor]:
    name = f"eagle3-features-{split}{'-all' if split == 'heldout' else ''}.pt"
    return aux_features(target, samples, layers, plan.work_dir / name)


def _new_head(plan: BuildPlan, target: Any, layers: tuple[int, ...],
              data: Distilled) -> Eagle3Head:
    """A fresh head, or (fine-tuning) the shipped one with its draft vocabulary."""
    if plan.init_head is not None:
        return load_head3(plan.target_dir, plan.init_head / EAGLE3.weights_file, layers)
    vocab = draft_vocabulary([s.output_ids for s in data.train], plan.draft_vocab)
    head = Eagle3Head(Eagle3Shape(HeadShape.of(target.config), layers, len(vocab)))
    init_from_target(head, target, vocab)
    return head


def start(plan: BuildPlan, reporter: Reporter, data: Distilled) -> Training:
    target, frozen = loaded_target(plan.target_dir)
    layers = default_aux_layers(int(target.config.num_hidden_layers))
    reporter.stage("target residual streams", 2)
    train_feats = _features(plan, target, layers, "train", data.train)
    reporter.advance(1, 2)
    held_feats = _features(plan, target, layers, "heldout", data.heldout)
    reporter.advance(2, 2)
    head = _new_head(plan, target, layers, data)
    features = feature_table(data.train + data.heldout, train_feats + held_feats)
    objective = Eagle3Objective(head, features, frozen.embed, HeadLoss(passes=plan.k))
    return Training(objective, "checkpoint-eagle3.pt", plan.k, "training (EAGLE-3 head)")


def load_head3(target_dir: Path, tensors_file: Path, layers: tuple[int, ...]) -> Eagle3Head:
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    config = LlamaConfig(**json.loads((target_dir / "config.json").read_text()))
    tensors = load_file(str(tensors_file))
    shape = Eagle3Shape(HeadShape.of(config), layers, int(tensors["d2t"].shape[0]))
    head = Eagle3Head(shape)
    head.load_state_dict({k: v if k == "d2t" else v.to(torch.float32)
                          for k, v in tensors.items()})
    return head


def ship(plan: BuildPlan, head: torch.nn.Module, heldout: list[Sample],
         k: int) -> tuple[Path, AcceptanceReport]:
    """Ship the head in bfloat16 (``d2t`` exact) and re-measure acceptance after rounding."""
    from safetensors.torch import save_file

    assert isinstance(head, Eagle3Head)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / EAGLE3.weights_file
    save_file({name: t.detach().contiguous() if name == "d2t" else
               t.detach().to(torch.bfloat16).contiguous()
               for name, t in head.state_dict().items()}, str(path))
    layers = head.shape.aux_layers
    shipped = load_head3(plan.target_dir, path, layers)
    target, frozen = loaded_target(plan.target_dir)
    feats = _features(plan, target, layers, "heldout", heldout)  # cached
    return path, eagle3_acceptance(shipped, frozen.embed, heldout, feats, k)


def architecture(plan: BuildPlan, head: torch.nn.Module) -> dict[str, Any]:
    assert isinstance(head, Eagle3Head)
    return {"type": EAGLE3.arch_type, "method": EAGLE3.name, "num_layers": 1,
            "aux_layers": list(head.shape.aux_layers),
            "draft_vocab": head.shape.draft_vocab,
            "shared_with_target": ["model.embed_tokens"],
            "trained": ["fc_norm", "fc", "midlayer", "norm", "lm_head"],
            "stored_dtype": "bfloat16",
            "reads": "target's residual streams after aux_layers layers"}


def materialize(shipped: Path, card: Mapping[str, Any], target_dir: Path, dest: Path) -> None:
    layers = tuple(int(n) for n in card["architecture"]["aux_layers"])
    write_vllm_folder(load_head3(target_dir, shipped / EAGLE3.weights_file, layers),
                      target_dir, dest)


RECIPE = Recipe(EAGLE3, start, ship, architecture, materialize,
                loss="over {k} unrolled drafting steps: CE on greedy token + 0.5 x soft CE "
                     "on target top-5, over the draft vocabulary",
                measured="exact drafting")
