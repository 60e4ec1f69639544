from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.quantization.recipes import METHODS, recipe_for

REPO = Path(__file__).resolve().parents[3]
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


def test_fingerprint_when_recomputed_in_a_fresh_process_then_identical() -> None:
    # `quantize` compares the fingerprint recorded by an earlier run with today's.
    script = ("from engine.quantization.recipes import recipe_for\n"
              "print(recipe_for('w8a8-int8').fingerprint(), "
              "recipe_for('w4a16-awq').fingerprint())\n")
    fresh = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.split()
    assert fresh == [recipe_for("w8a8-int8").fingerprint(), recipe_for("w4a16-awq").fingerprint()]
    assert fresh[0] != fresh[1]


def test_fingerprint_when_the_calibration_size_or_seed_changes_then_changes() -> None:
    recipe = recipe_for("w8a8-int8")
    smaller = recipe.scaled(8)
    assert smaller.calibration_samples == 8
    assert smaller.fingerprint() != recipe.fingerprint()
    assert dataclasses.replace(recipe, seed=1).fingerprint() != recipe.fingerprint()


def test_4bit_recipe_asks_for_bfloat16_serving() -> None:
    assert recipe_for("w4a16-awq").serving_dtype == "bfloat16"
    assert recipe_for("w8a8-int8").serving_dtype == "float32"
