from __future__ import annotations

import pytest

from engine.quantization.recipes import METHODS, recipe_for

HIDDEN, INTERMEDIATE = 576, 1536  # SmolLM2-135M's Linear input widths


def test_every_method_has_a_recipe_with_its_algorithm() -> None:
    assert recipe_for("w8a8-int8").algorithm == "SmoothQuant + GPTQ"
    assert recipe_for("w4a16-awq").algorithm == "AWQ"
    assert {recipe_for(m).method for m in METHODS} == set(METHODS)


def test_unknown_method_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="w8a8-int8, w4a16-awq"):
        recipe_for("fp8")


def test_4bit_group_size_divides_the_default_models_layers() -> None:
    group = recipe_for("w4a16-awq").group_size
    assert group is not None
    assert HIDDEN % group == 0
    assert INTERMEDIATE % group == 0


def test_fingerprint_is_stable_and_changes_with_the_calibration_size() -> None:
    recipe = recipe_for("w8a8-int8")
    assert recipe.fingerprint() == recipe_for("w8a8-int8").fingerprint()
    smaller = recipe.scaled(8)
    assert smaller.calibration_samples == 8
    assert smaller.fingerprint() != recipe.fingerprint()


def test_4bit_recipe_asks_for_bfloat16_serving() -> None:
    assert recipe_for("w4a16-awq").serving_dtype == "bfloat16"
    assert recipe_for("w8a8-int8").serving_dtype == "float32"
