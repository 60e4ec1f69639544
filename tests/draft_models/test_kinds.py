"""Draft kinds: their public names, the shipped cards they read, and one recipe each."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import get_args

import pytest

from draft_models.kinds import (
    DRAFT_MODEL,
    EAGLE,
    EAGLE3,
    KINDS,
    DraftKind,
    installed_kind,
    kind_named,
    kind_of_card,
)
from draft_models.plan import BuildPlan
from draft_models.recipes import RECIPES, recipe_for
from draft_models.registry import SHIPPED_DIR, read_card
from engine.config import SpeculationMethod


def test_kind_names_are_the_speculation_methods_the_engine_serves() -> None:
    assert [kind.name for kind in KINDS] == ["draft_model", "eagle", "eagle3"]
    assert {kind.name for kind in KINDS} <= set(get_args(SpeculationMethod))


def test_kind_named_when_given_the_old_llama_name_then_the_small_draft() -> None:
    assert kind_named("llama") is DRAFT_MODEL
    assert kind_named("eagle3") is EAGLE3


def test_kind_named_when_unknown_then_the_error_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="draft_model, eagle, eagle3"):
        kind_named("medusa")


def test_every_kind_has_exactly_one_recipe() -> None:
    assert [recipe.kind for recipe in RECIPES] == list(KINDS)
    assert all(recipe_for(kind).kind is kind for kind in KINDS)


@pytest.mark.parametrize(("folder", "kind", "installed"), [
    ("smollm2-135m-instruct", DRAFT_MODEL, "smollm2-135m-instruct-draft-2l"),
    ("smollm2-135m-instruct-eagle", EAGLE, "smollm2-135m-instruct-eagle"),
    ("smollm2-135m-instruct-eagle3", EAGLE3, "smollm2-135m-instruct-eagle3"),
])
def test_shipped_card_when_read_then_names_its_kind_weights_and_folders(
    folder: str, kind: DraftKind, installed: str
) -> None:
    card = read_card(SHIPPED_DIR / folder)
    assert kind_of_card(card) is kind
    assert kind.weights_file in card["files"]
    assert (SHIPPED_DIR / folder / kind.weights_file).is_file()
    assert kind.shipped_name(card["target"]["name"]) == folder
    assert kind.installed_name(card) == installed


def test_installed_kind_when_the_folder_keeps_its_card_then_that_kind(tmp_path: Path) -> None:
    shutil.copy(SHIPPED_DIR / "smollm2-135m-instruct-eagle" / "draft-card.json", tmp_path)
    assert installed_kind(tmp_path) is EAGLE
    assert installed_kind(tmp_path / "elsewhere") is None


def test_draft_kind_when_a_folder_name_ignores_the_target_then_refused() -> None:
    with pytest.raises(ValueError, match="target"):
        DraftKind("medusa", "MedusaHead", "medusa.safetensors", "medusa", "{target}-medusa",
                  lambda arch: "Medusa heads")


def test_build_plan_when_init_head_for_a_kind_that_cannot_fine_tune_then_refused(
    tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="eagle3, not eagle"):
        BuildPlan("tiny", tmp_path, tmp_path, tmp_path, kind=EAGLE, init_head=tmp_path)
    assert BuildPlan("tiny", tmp_path, tmp_path, tmp_path, kind=EAGLE3,
                     init_head=tmp_path).init_head == tmp_path
