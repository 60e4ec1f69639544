"""Training a small Llama draft on a tiny target: a smoke run learns and resumes exactly."""

from pathlib import Path
from typing import Any

import pytest

from draft_models.acceptance import AcceptanceReport
from draft_models.architecture import build_from_target, default_init_layers, trained_tensors
from draft_models.datagen import Sample
from draft_models.draft_model_train import DraftModelObjective
from draft_models.evaluate import acceptance
from draft_models.train import BY_LENGTH, BY_RATE, Trainer, TrainPlan, batch_for_step, make_batches
from tests.draft_models.conftest import chain_samples


def _target(folder: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def _plan(tmp_path: Path, steps: int) -> TrainPlan:
    return TrainPlan(tmp_path / "ckpt.pt", steps=steps, batch_tokens=256, lr=1e-2, warmup=2,
                     eval_every=10, checkpoint_every=5, patience=100, threads=1)


def _trainer(draft: Any, train: list[Sample], plan: TrainPlan) -> Trainer:
    return Trainer(DraftModelObjective.on(draft, train, pad_id=2), plan)


def test_default_init_layers_spans_first_to_last() -> None:
    assert default_init_layers(2, 30) == (0, 29)
    assert default_init_layers(3, 30) == (0, 14, 29)  # round(14.5) is 14
    assert default_init_layers(1, 30) == (29,)


def test_draft_shares_embeddings_and_copies_chosen_layers(tiny_target: Path) -> None:
    import torch

    target = _target(tiny_target)
    draft = build_from_target(target, (0, 2))
    assert draft.config.num_hidden_layers == 2
    assert torch.equal(draft.model.embed_tokens.weight, target.model.embed_tokens.weight)
    assert torch.equal(draft.lm_head.weight, draft.model.embed_tokens.weight)
    assert torch.equal(draft.model.layers[1].mlp.up_proj.weight,
                       target.model.layers[2].mlp.up_proj.weight)
    assert all(k.startswith(("model.layers.", "model.norm.")) for k in trained_tensors(draft))


def test_batches_cover_every_sample_once_per_epoch_within_the_token_budget() -> None:
    samples = chain_samples(40)
    batches = make_batches(samples, batch_tokens=256, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(40))
    assert all(len(b) * 26 <= 256 for b in batches)
    assert make_batches(samples, 256, 0, 1) != batches  # a new order each epoch


def test_smoke_training_raises_held_out_acceptance(tiny_target: Path, tmp_path: Path) -> None:
    samples = chain_samples(48)
    train, heldout = samples[:40], samples[40:]
    draft = build_from_target(_target(tiny_target), (0, 2))
    before = acceptance(draft, heldout, k=4).rate
    result = _trainer(draft, train, _plan(tmp_path, 60)).run(train, heldout, lambda *_: None)
    assert result.steps == 60
    assert result.best.rate > before + 0.3
    assert [h["step"] for h in result.history] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


class _Interrupt(Exception):
    pass


def _stop_at(step: int):  # type: ignore[no-untyped-def]
    def progress(done: int, total: int, metrics: dict[str, float]) -> None:
        if done == step:
            raise _Interrupt

    return progress


def test_resumed_training_matches_an_uninterrupted_run(tiny_target: Path, tmp_path: Path) -> None:
    import torch

    samples = chain_samples(24)
    straight = build_from_target(_target(tiny_target), (0, 2))
    _trainer(straight, samples, _plan(tmp_path / "a", 10)).run(samples, samples[:2],
                                                                lambda *_: None)
    interrupted = build_from_target(_target(tiny_target), (0, 2))
    with pytest.raises(_Interrupt):  # stops right after the step-5 checkpoint
        _trainer(interrupted, samples, _plan(tmp_path / "b", 10)).run(
            samples, samples[:2], _stop_at(5))
    again = build_from_target(_target(tiny_target), (0, 2))
    result = _trainer(again, samples, _plan(tmp_path / "b", 10)).run(
        samples, samples[:2], lambda *_: None)
    assert result.steps == 10
    for name, tensor in trained_tensors(straight).items():
        assert torch.allclose(tensor, trained_tensors(again)[name], atol=1e-6), name


def test_resumed_training_when_the_checkpoint_predates_the_merged_loop_then_it_continues(
    tiny_target: Path, tmp_path: Path
) -> None:
    import torch

    samples = chain_samples(24)
    straight = build_from_target(_target(tiny_target), (0, 2))
    _trainer(straight, samples, _plan(tmp_path / "a", 10)).run(samples, samples[:2],
                                                                lambda *_: None)
    interrupted = build_from_target(_target(tiny_target), (0, 2))
    with pytest.raises(_Interrupt):
        _trainer(interrupted, samples, _plan(tmp_path / "b", 10)).run(
            samples, samples[:2], _stop_at(5))
    checkpoint = tmp_path / "b" / "ckpt.pt"
    old_names = {"weights": "tensors", "best": "best_tensors"}  # the small draft's old loop
    state = torch.load(checkpoint, weights_only=False)
    torch.save({old_names.get(k, k): v for k, v in state.items()}, checkpoint)
    again = build_from_target(_target(tiny_target), (0, 2))
    result = _trainer(again, samples, _plan(tmp_path / "b", 10)).run(
        samples, samples[:2], lambda *_: None)
    assert result.steps == 10
    for name, tensor in trained_tensors(straight).items():
        assert torch.allclose(tensor, trained_tensors(again)[name], atol=1e-6), name


def test_selection_by_rate_when_the_gain_is_under_half_a_point_then_the_best_stays() -> None:
    best = AcceptanceReport(2, steps=100, drafted=1000, accepted=500)
    assert not BY_RATE.improves(AcceptanceReport(2, 100, 1000, 504), best)  # +0.4 points
    assert BY_RATE.improves(AcceptanceReport(2, 100, 1000, 506), best)
    assert BY_RATE.stops_on_plateau and not BY_LENGTH.stops_on_plateau


def test_selection_by_length_when_tied_then_the_later_weights_are_kept() -> None:
    best = AcceptanceReport(2, steps=10, drafted=20, accepted=10)
    assert BY_LENGTH.improves(AcceptanceReport(2, 10, 20, 10), best)
    assert not BY_LENGTH.improves(AcceptanceReport(2, 10, 20, 9), best)


def test_batch_for_step_wraps_into_the_next_epoch() -> None:
    samples = chain_samples(8)
    per_epoch = len(make_batches(samples, 256, seed=0, epoch=0))
    first_of_second = make_batches(samples, 256, seed=0, epoch=1)[0]
    assert batch_for_step(samples, _plan(Path("/unused"), 1), per_epoch) == [
        samples[i] for i in first_of_second
    ]


def test_plan_rejects_zero_steps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="steps"):
        TrainPlan(tmp_path / "c.pt", steps=0)
