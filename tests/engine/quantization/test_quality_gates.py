"""Quality gates for the shipped quantized variants, measured by vLLM itself.

The variants are the ones `llm-gateway quantize --all` writes into the model cache (built
here when missing; a no-op when they are up to date). One evaluation subprocess loads
float32, W8A8 and W4A16 in turn (a different engine configuration from the session's
gateway, hence its own engine) and scores a held-out text and a fixed greedy prompt set.
Bounds sit between the measured values and what a broken quantization gives (perplexity in
the thousands, no shared greedy prefix). Measured on heldout.txt (1,135 scored tokens):
float32 26.20; W8A8 26.42 (x1.008), greedy prefix 0.60 (2/12 identical); W4A16 30.46
(x1.163), greedy prefix 0.23 (0/12). The whole evaluation took 4.6 min on a loaded machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.quantization.capability import Scheme, detect_hardware, servable
from engine.quantization.quality import agreement
from engine.quantization.worker import MARKER
from gateway.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
BASE = "smollm2-135m-instruct"
VARIANTS = {"w8a8": f"{BASE}-w8a8", "w4a16": f"{BASE}-w4a16"}
# Perplexity on heldout.txt, relative to float32 (measured: see module docstring).
MAX_PERPLEXITY_RATIO = {"w8a8": 1.05, "w4a16": 1.30}
# Mean common greedy prefix with float32 over 12 prompts x 32 tokens.
MIN_PREFIX_FRACTION = {"w8a8": 0.35, "w4a16": 0.12}

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(3000)]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def folders() -> dict[str, Path]:
    subprocess.run([sys.executable, "-m", "cli", "quantize", "--all", "--profile", "test"],
                   cwd=REPO, env=_env(), check=True)
    settings = load_settings(profile="test")
    return {"float32": settings.model_path(BASE)} | {
        key: settings.model_path(name) for key, name in VARIANTS.items()}


@pytest.fixture(scope="module")
def report(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("quality") / "quality.json"
    dtypes = {"float32": "float32", "w8a8": "float32", "w4a16": "bfloat16"}
    targets = [f"{key}={folders[key]}:{dtypes[key]}" for key in dtypes]
    subprocess.run([sys.executable, "-m", "engine.quantization.evaluate", "--out", str(out),
                    *targets], cwd=REPO, env=_env(), check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_folder_is_compressed_tensors_with_its_recipe_recorded(
    folders: dict[str, Path], variant: str
) -> None:
    folder = folders[variant]
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    record = json.loads((folder / MARKER).read_text())
    expected = {"w8a8": "w8a8-int8", "w4a16": "w4a16-awq"}[variant]
    assert record["recipe"]["method"] == expected
    assert (folder / "recipe.yaml").is_file()


def test_float32_reference_is_sane(report: dict[str, Any]) -> None:
    assert 10 < report["float32"]["perplexity"] < 60
    assert report["float32"]["scored_tokens"] > 1000
    assert "Paris" in report["float32"]["greedy_text"][0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_quantized_perplexity_stays_near_float32(report: dict[str, Any], variant: str) -> None:
    ratio = report[variant]["perplexity"] / report["float32"]["perplexity"]
    assert 0.9 < ratio < MAX_PERPLEXITY_RATIO[variant], report[variant]["perplexity"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_quantized_greedy_answers_follow_float32(report: dict[str, Any], variant: str) -> None:
    result = agreement(report["float32"]["greedy"], report[variant]["greedy"])
    assert result.prompts == 12
    assert result.mean_prefix_fraction >= MIN_PREFIX_FRACTION[variant], result


def test_report_names_the_evaluator_this_machine_could_run(report: dict[str, Any]) -> None:
    hardware = detect_hardware()
    schemes: dict[str, tuple[Scheme, str]] = {"w8a8": ("w8a8-int8", "float32"),
                                              "w4a16": ("w4a16", "bfloat16")}
    for name, (scheme, dtype) in schemes.items():
        reason = servable(scheme, dtype, hardware)
        expected = "vLLM" if reason is None else f"transformers, dequantized weights: {reason}"
        assert report[name]["evaluator"] == expected


def test_dequantized_evaluator_when_given_float32_weights_then_agrees_with_vllm(
    folders: dict[str, Path], report: dict[str, Any]
) -> None:
    """The fallback used where vLLM lacks a kernel, checked against vLLM on any machine."""
    from transformers import AutoTokenizer

    from engine.quantization import calibration
    from engine.quantization.dequantized import evaluate_dequantized
    from engine.quantization.evaluate import GREEDY_TOKENS, greedy_prompt_ids

    path = folders["float32"]
    prompts = greedy_prompt_ids(AutoTokenizer.from_pretrained(str(path)))[:3]
    result = evaluate_dequantized(path, calibration.heldout_text(), prompts, GREEDY_TOKENS,
                                  "reference check")
    vllm = report["float32"]
    assert result["scored_tokens"] == vllm["scored_tokens"]
    assert abs(result["perplexity"] / vllm["perplexity"] - 1) < 0.01
    assert agreement(vllm["greedy"][:3], result["greedy"]).mean_prefix_fraction > 0.9
