"""``draft train --arch eagle`` after data generation: train, ship, install for vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from draft_models.eagle_build import load_head
from draft_models.kinds import EAGLE
from draft_models.materialize import materialize
from draft_models.pipeline import train_draft, write_draft
from draft_models.plan import BuildPlan
from draft_models.registry import read_card
from tests.draft_models.conftest import QuietReporter, chain_samples, write_split


def test_eagle_build_when_data_exists_then_ships_a_card_and_installs_a_vllm_folder(
    tiny_target: Path, tmp_path: Path
) -> None:
    work, out = tmp_path / "work", tmp_path / "shipped" / "tiny-eagle"
    write_split(work, chain_samples(30), train=24)
    plan = BuildPlan("tiny", tiny_target, work, out, steps=6, held_out=6, eval_every=3,
                     eval_samples=6, batch_tokens=256, kind=EAGLE, k=2)
    head, result = train_draft(plan, QuietReporter())
    assert result.steps == 6 and [h["step"] for h in result.history] == [3.0, 6.0]
    folder = write_draft(plan, head, result)

    card = read_card(folder)
    assert card["architecture"]["type"] == "EagleHead" and card["acceptance"]["k"] == 2
    assert len(card["acceptance"]["by_position"]) == 2
    assert "EAGLE head" in (folder / "REPORT.md").read_text()
    shipped = load_head(tiny_target, folder / EAGLE.weights_file)
    for name, tensor in head.state_dict().items():  # bfloat16 on disk
        torch.testing.assert_close(shipped.state_dict()[name], tensor, rtol=1e-2, atol=1e-2)

    installed = materialize(folder, tiny_target, tmp_path / "cache")
    assert installed.name == "tiny-eagle"
    config = json.loads((installed / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and (installed / "model.safetensors").is_file()
    assert materialize(folder, tiny_target, tmp_path / "cache") == installed  # idempotent
