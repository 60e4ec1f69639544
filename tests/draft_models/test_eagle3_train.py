"""EAGLE-3 head training and build on a tiny target: streams, learning, shipping, install."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from draft_models.eagle3 import Eagle3Head, Eagle3Shape, draft_vocabulary, init_from_target
from draft_models.eagle3_build import load_head3
from draft_models.eagle3_train import Eagle3Objective, aux_features, eagle3_acceptance
from draft_models.eagle_train import HeadLoss, feature_table
from draft_models.head_layers import HeadShape
from draft_models.kinds import EAGLE3
from draft_models.materialize import materialize
from draft_models.pipeline import train_draft, write_draft
from draft_models.plan import BuildPlan
from draft_models.registry import read_card
from draft_models.train import Trainer, TrainPlan
from tests.draft_models.conftest import QuietReporter, chain_samples, write_split


def _target(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def test_aux_features_when_computed_then_the_residual_streams_after_those_layers(
    tiny_target: Path, tmp_path: Path
) -> None:
    target = _target(tiny_target)
    samples = chain_samples(2)
    feats = aux_features(target, samples, (1, 3), tmp_path / "aux.pt")  # of 3 layers
    ids = torch.tensor([list(samples[0].prompt_ids) + list(samples[0].output_ids)])
    with torch.no_grad():
        states = target.model(input_ids=ids, output_hidden_states=True).hidden_states
    h = target.config.hidden_size
    assert feats[0].shape == (ids.shape[1], 2 * h)
    torch.testing.assert_close(feats[0][:, :h], states[1][0])  # after layer 1
    final = target.model.norm(feats[0][:, h:])  # after the last layer: before the norm
    torch.testing.assert_close(final, states[-1][0], rtol=1e-4, atol=1e-5)


def test_eagle3_training_when_answers_follow_a_rule_then_acceptance_rises(
    tiny_target: Path, tmp_path: Path
) -> None:
    target = _target(tiny_target)
    samples = chain_samples(48)
    train, heldout = samples[:40], samples[40:]
    layers = (1, 2)
    train_feats = aux_features(target, train, layers, tmp_path / "train.pt")
    held_feats = aux_features(target, heldout, layers, tmp_path / "held.pt")
    vocab = draft_vocabulary([s.output_ids for s in train], 128)
    head = Eagle3Head(Eagle3Shape(HeadShape.of(target.config), layers, len(vocab)))
    init_from_target(head, target, vocab)
    embed = target.model.embed_tokens.weight.detach()
    plan = TrainPlan(tmp_path / "e3.pt", steps=300, batch_tokens=256, lr=3e-2, warmup=2,
                     eval_every=100, checkpoint_every=100, threads=1, k=3)
    before = eagle3_acceptance(head, embed, heldout, held_feats, 3)
    features = feature_table(train + heldout, train_feats + held_feats)
    trainer = Trainer(Eagle3Objective(head, features, embed, HeadLoss(passes=3)), plan)
    result = trainer.run(train, heldout, lambda *_: None)
    assert before.rate < 0.05 and result.best.rate > 0.25, result.history
    assert result.best.rate_by_position()[2] > 0.05  # later drafts too, from its own states


def test_eagle3_build_when_data_exists_then_ships_a_card_and_installs_a_vllm_folder(
    tiny_target: Path, tmp_path: Path
) -> None:
    work, out = tmp_path / "work", tmp_path / "shipped" / "tiny-eagle3"
    write_split(work, chain_samples(30), train=24)
    plan = BuildPlan("tiny", tiny_target, work, out, steps=6, held_out=6, eval_every=3,
                     eval_samples=6, batch_tokens=256, kind=EAGLE3, k=2, draft_vocab=32)
    head, result = train_draft(plan, QuietReporter())
    assert result.steps == 6 and head.shape.draft_vocab == 32
    folder = write_draft(plan, head, result)

    card = read_card(folder)
    assert card["architecture"]["type"] == "Eagle3Head" and card["acceptance"]["k"] == 2
    assert card["architecture"]["draft_vocab"] == 32
    assert "EAGLE-3 head" in (folder / "REPORT.md").read_text()
    shipped = load_head3(tiny_target, folder / EAGLE3.weights_file, head.shape.aux_layers)
    for name, tensor in head.state_dict().items():  # bfloat16 on disk, d2t exact
        torch.testing.assert_close(shipped.state_dict()[name], tensor, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(shipped.d2t, head.d2t, rtol=0, atol=0)

    installed = materialize(folder, tiny_target, tmp_path / "cache")
    assert installed.name == "tiny-eagle3"
    config = json.loads((installed / "config.json").read_text())
    assert config["architectures"] == ["Eagle3LlamaForCausalLM"]
    assert config["eagle_aux_hidden_state_layer_ids"] == list(head.shape.aux_layers)


def test_eagle3_build_when_init_from_a_head_then_fine_tunes_it_with_its_vocabulary(
    tiny_target: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    write_split(work, chain_samples(30), train=24)
    first = BuildPlan("tiny", tiny_target, work, tmp_path / "first", steps=6, held_out=6,
                      eval_every=3, eval_samples=6, batch_tokens=256, kind=EAGLE3, k=2,
                      draft_vocab=32)
    start = write_draft(first, *train_draft(first, QuietReporter()))
    tuned = BuildPlan("tiny", tiny_target, tmp_path / "work2", tmp_path / "tuned", steps=3,
                      held_out=6, eval_every=3, eval_samples=6, batch_tokens=256,
                      kind=EAGLE3, k=2, draft_vocab=16, init_head=start, lr=1e-4)
    write_split(tuned.work_dir, chain_samples(30, seed=1), train=24)
    head, result = train_draft(tuned, QuietReporter())

    before = load_head3(tiny_target, start / EAGLE3.weights_file, head.shape.aux_layers)
    assert head.shape.draft_vocab == 32  # the starting head's, not the plan's 16
    torch.testing.assert_close(head.d2t, before.d2t, rtol=0, atol=0)
    drift = max((head.state_dict()[k] - v).abs().max().item()
                for k, v in before.state_dict().items() if k != "d2t")
    assert 0 < drift < 0.05  # trained a little, from the starting weights
    card = read_card(write_draft(tuned, head, result))
    assert card["training"]["init_from"]["head"] == "first"
    assert EAGLE3.weights_file in card["training"]["init_from"]
    assert card["training"]["init_from"]["its_steps"] == "6"
    assert "fine-tuned from first" in (tmp_path / "tuned" / "REPORT.md").read_text()


def test_build_plan_when_init_head_without_eagle3_then_refused(tiny_target: Path) -> None:
    with pytest.raises(ValueError, match="eagle3"):
        BuildPlan("tiny", tiny_target, tiny_target, tiny_target, init_head=tiny_target)
