"""EAGLE head training on a tiny target: it learns, resumes, caches features, ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from draft_models.datagen import Sample
from draft_models.eagle import EagleHead, init_from_target
from draft_models.eagle_train import (
    EagleObjective,
    Frozen,
    HeadLoss,
    eagle_acceptance,
    feature_table,
    target_features,
)
from draft_models.head_layers import HeadShape
from draft_models.losses import VocabSubset
from draft_models.train import Trainer, TrainPlan
from tests.draft_models.conftest import chain_samples


def _target(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def _setup(tiny_target: Path, tmp_path: Path, steps: int, feature_weight: float = 1.0,
           lr: float = 1e-2) -> tuple[Any, ...]:
    target = _target(tiny_target)
    frozen = Frozen(target.model.embed_tokens.weight.detach(), target.lm_head.weight.detach())
    head = EagleHead(HeadShape.of(target.config))
    init_from_target(head, target)
    plan = TrainPlan(tmp_path / "eagle.pt", steps=steps, batch_tokens=256, lr=lr, warmup=2,
                     eval_every=10, checkpoint_every=5, threads=1, k=3)
    return target, frozen, head, (plan, HeadLoss(passes=3, feature_weight=feature_weight))


def _trainer(head: EagleHead, frozen: Frozen, plans: tuple[TrainPlan, HeadLoss],
             train: list[Sample], features: dict[Sample, torch.Tensor]) -> Trainer:
    """The EAGLE objective, normalised over the tokens of ``train``."""
    plan, scoring = plans
    subset = VocabSubset.from_samples(train, frozen.embed.shape[0])
    return Trainer(EagleObjective(head, features, frozen, scoring, subset), plan)


def test_eagle_training_when_answers_follow_a_rule_then_acceptance_rises(
    tiny_target: Path, tmp_path: Path
) -> None:
    samples = chain_samples(48)
    train, heldout = samples[:40], samples[40:]
    # The rule is not the random target's own behaviour: learn tokens, not its states.
    target, frozen, head, plan = _setup(tiny_target, tmp_path, 120, feature_weight=0.0, lr=3e-2)
    train_feats = target_features(target, train, tmp_path / "train.pt")
    held_feats = target_features(target, heldout, tmp_path / "held.pt")
    before = eagle_acceptance(head, heldout, held_feats, frozen, 3)
    features = feature_table(train + heldout, train_feats + held_feats)
    trainer = _trainer(head, frozen, plan, train, features)
    result = trainer.run(train, heldout, lambda *_: None)
    assert result.steps == 120
    assert before.rate < 0.05 and result.best.rate > 0.25  # measured 0.36 at step 120
    assert result.best.rate_by_position()[2] > 0.05  # later drafts too, from its own states


def test_target_features_when_cached_then_reused_and_match_the_target(
    tiny_target: Path, tmp_path: Path
) -> None:
    samples = chain_samples(3)
    target = _target(tiny_target)
    first = target_features(target, samples, tmp_path / "f.pt")
    ids = torch.tensor([list(samples[1].prompt_ids) + list(samples[1].output_ids)])
    with torch.no_grad():
        expected = target.model(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(first[1], expected)
    with torch.no_grad():
        target.model.norm.weight.mul_(2.0)  # changes what a recomputation would give
    again = target_features(target, samples, tmp_path / "f.pt")
    torch.testing.assert_close(again[1], expected)  # same data: read from the cache
    fresh = target_features(target, samples[:2], tmp_path / "f.pt")
    assert not torch.allclose(fresh[1], expected)  # different data: recomputed


class _Interrupt(Exception):
    pass


def test_eagle_training_when_resumed_then_matches_an_uninterrupted_run(
    tiny_target: Path, tmp_path: Path
) -> None:
    samples = chain_samples(24)
    target, frozen, straight, plan = _setup(tiny_target, tmp_path / "a", 10)
    feats = feature_table(samples, target_features(target, samples, tmp_path / "f.pt"))
    _trainer(straight, frozen, plan, samples, feats).run(samples, samples[:2], lambda *_: None)

    def stop_at_5(done: int, total: int, metrics: dict[str, float]) -> None:
        if done == 5:
            raise _Interrupt

    _, _, interrupted, plan_b = _setup(tiny_target, tmp_path / "b", 10)
    with pytest.raises(_Interrupt):
        _trainer(interrupted, frozen, plan_b, samples, feats).run(samples, samples[:2],
                                                                  stop_at_5)
    _, _, again, _ = _setup(tiny_target, tmp_path / "b", 10)
    result = _trainer(again, frozen, plan_b, samples, feats).run(samples, samples[:2],
                                                                 lambda *_: None)
    assert result.steps == 10
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)
