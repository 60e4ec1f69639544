"""``draft train --arch eagle3``: train, ship and install an EAGLE-3 head for a target.

The shipped form is the head's own tensors (``eagle3.safetensors``: bfloat16, ``d2t``
as int64), card and report; the embeddings are the target's, so ``draft install``
writes a config and the tensors (float32) into a folder vLLM serves with ``method:
eagle3``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import read_samples
from draft_models.registry import write_card
from draft_models.train import TrainResult

if TYPE_CHECKING:
    from draft_models.eagle3 import Eagle3Head
    from draft_models.pipeline import BuildPlan, Reporter

EAGLE3_FILE = "eagle3.safetensors"
ARCH_TYPE = "Eagle3Head"


def default_aux_layers(num_layers: int) -> tuple[int, ...]:
    """A low, a middle and the last residual stream (after that many target layers)."""
    return (2, num_layers // 2, num_layers)


def _features(plan: BuildPlan, target: Any, layers: tuple[int, ...],
              split: str) -> tuple[list[Any], list[Any]]:
    from draft_models.eagle3_train import aux_features

    samples = list(read_samples(plan.work_dir / split))
    name = f"eagle3-features-{split}{'-all' if split == 'heldout' else ''}.pt"
    return samples, aux_features(target, samples, layers, plan.work_dir / name)


def train_eagle3(plan: BuildPlan, reporter: Reporter) -> tuple[Eagle3Head, TrainResult]:
    from draft_models.eagle3 import Eagle3Head, Eagle3Shape, draft_vocabulary, init_from_target
    from draft_models.eagle3_train import Eagle3Objective
    from draft_models.eagle_build import head_plan, loaded_target, run_trainer
    from draft_models.eagle_train import EagleTrainer
    from draft_models.head_layers import HeadShape

    target, frozen = loaded_target(plan.target_dir)
    layers = default_aux_layers(int(target.config.num_hidden_layers))
    reporter.stage("target residual streams", 2)
    train, train_feats = _features(plan, target, layers, "train")
    reporter.advance(1, 2)
    heldout, held_feats = _features(plan, target, layers, "heldout")
    reporter.advance(2, 2)
    if plan.init_head is not None:  # fine-tune: its weights, its draft vocabulary
        head = load_head3(plan.target_dir, plan.init_head / EAGLE3_FILE, layers)
    else:
        vocab = draft_vocabulary([s.output_ids for s in train], plan.draft_vocab)
        head = Eagle3Head(Eagle3Shape(HeadShape.of(target.config), layers, len(vocab)))
        init_from_target(head, target, vocab)
    del target
    eagle_plan = head_plan(plan, "checkpoint-eagle3.pt")
    trainer = EagleTrainer(head, frozen, eagle_plan,
                           lambda _: Eagle3Objective(head, frozen.embed, eagle_plan))
    reporter.stage("training (EAGLE-3 head)", plan.steps)
    result = run_trainer(trainer, plan, reporter, (train, train_feats, heldout, held_feats))
    return head, result


def load_head3(target_dir: Path, tensors_file: Path, layers: tuple[int, ...]) -> Eagle3Head:
    import json

    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    from draft_models.eagle3 import Eagle3Head, Eagle3Shape
    from draft_models.head_layers import HeadShape

    config = LlamaConfig(**json.loads((target_dir / "config.json").read_text()))
    tensors = load_file(str(tensors_file))
    shape = Eagle3Shape(HeadShape.of(config), layers, int(tensors["d2t"].shape[0]))
    head = Eagle3Head(shape)
    head.load_state_dict({k: v if k == "d2t" else v.to(torch.float32)
                          for k, v in tensors.items()})
    return head


def write_eagle3(plan: BuildPlan, head: Eagle3Head, result: TrainResult) -> Path:
    """Ship the head in bfloat16 and re-measure acceptance after the rounding."""
    import torch
    from safetensors.torch import save_file

    from draft_models.eagle3_train import eagle3_acceptance
    from draft_models.eagle_build import loaded_target

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / EAGLE3_FILE
    save_file({k: v.detach().contiguous() if k == "d2t" else
               v.detach().to(torch.bfloat16).contiguous()
               for k, v in head.state_dict().items()}, str(path))
    layers = head.shape.aux_layers
    shipped = load_head3(plan.target_dir, path, layers)
    target, frozen = loaded_target(plan.target_dir)
    heldout, feats = _features(plan, target, layers, "heldout")  # cached
    final = eagle3_acceptance(shipped, frozen.embed, heldout, feats, result.best.k)
    card = _card(plan, head, result, final, path)
    write_card(plan.out_dir, card)
    from draft_models.pipeline import render_report

    (plan.out_dir / "REPORT.md").write_text(render_report(card))
    return plan.out_dir


def _card(plan: BuildPlan, head: Eagle3Head, result: TrainResult, final: AcceptanceReport,
          path: Path) -> dict[str, Any]:
    from draft_models.eagle_build import head_card

    architecture = {"type": ARCH_TYPE, "method": "eagle3", "num_layers": 1,
                    "aux_layers": list(head.shape.aux_layers),
                    "draft_vocab": head.shape.draft_vocab,
                    "shared_with_target": ["model.embed_tokens"],
                    "trained": ["fc_norm", "fc", "midlayer", "norm", "lm_head"],
                    "stored_dtype": "bfloat16",
                    "reads": "target's residual streams after aux_layers layers"}
    return head_card(plan, architecture, result, final, path,
                     "0.5 x soft CE on target top-5, over the draft vocabulary")


def materialize_eagle3(shipped: Path, card: dict[str, Any], target_dir: Path,
                       dest: Path) -> None:
    from draft_models.eagle3 import write_vllm_folder

    layers = tuple(int(n) for n in card["architecture"]["aux_layers"])
    write_vllm_folder(load_head3(target_dir, shipped / EAGLE3_FILE, layers), target_dir, dest)
