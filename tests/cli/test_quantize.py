from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer

from cli import quantize, serve
from engine.quantization.capability import Hardware
from gateway.settings import ModelSettings, load_settings

BASE = "smollm2-135m-instruct"


def test_variants_are_configured_but_not_served_by_default() -> None:
    settings = load_settings(profile="test")
    assert settings.served_models() == [BASE, "all-minilm-l6-v2"]  # the chat and embedding models
    assert settings.models[f"{BASE}-w8a8"].quantized is not None
    assert settings.models[f"{BASE}-w4a16"].dtype == "bfloat16"


@pytest.mark.parametrize(("profile", "variant", "dtype"), [
    ("cpu-w8a8", f"{BASE}-w8a8", "float32"), ("cpu-w4a16", f"{BASE}-w4a16", "bfloat16"),
    ("gpu-w8a8", f"{BASE}-w8a8", "bfloat16"), ("gpu-w4a16", f"{BASE}-w4a16", "bfloat16"),
])
def test_a_profile_chooses_the_variant_that_is_served(profile: str, variant: str,
                                                       dtype: str) -> None:
    settings = load_settings(profile=profile)
    assert set(settings.served_models()) == {variant, "all-minilm-l6-v2"}  # embeddings beside
    assert settings.default_model == variant
    config = settings.engine_config(variant)
    assert config.dtype == dtype
    assert config.model_path == settings.model_cache / variant


def test_default_model_must_be_enabled() -> None:
    settings = load_settings(profile="test")
    models = dict(settings.models)
    models[BASE] = dataclasses.replace(models[BASE], enabled=False)
    with pytest.raises(ValueError, match="not enabled"):
        type(settings)(**{**settings.model_dump(), "models": models})


def test_plan_all_builds_every_configured_variant_from_its_base() -> None:
    settings = load_settings(profile="test")
    jobs = dict(quantize.plan(settings, None, None, every=True))
    assert set(jobs) == {f"{BASE}-w8a8", f"{BASE}-w4a16"}
    assert jobs[f"{BASE}-w8a8"].source == settings.model_path(BASE)
    assert jobs[f"{BASE}-w4a16"].recipe.method == "w4a16-awq"
    assert jobs[f"{BASE}-w4a16"].output == settings.model_cache / f"{BASE}-w4a16"


def test_plan_by_base_and_method_finds_the_configured_variant() -> None:
    settings = load_settings(profile="test")
    [(name, job)] = quantize.plan(settings, BASE, "w8a8-int8", every=False, samples=8)
    assert name == f"{BASE}-w8a8"
    assert job.recipe.calibration_samples == 8


@pytest.mark.parametrize(("model", "method", "message"), [
    (None, None, "--all"), ("nope", "w8a8-int8", "unknown model"),
    (BASE, None, "--method is required"), (BASE, "fp4", "unknown quantization method"),
    (f"{BASE}-w8a8", "w4a16-awq", "configured as w8a8-int8"),
])
def test_plan_explains_bad_requests(model: str | None, method: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quantize.plan(load_settings(profile="test"), model, method, every=False)


def test_recorded_is_none_until_the_same_recipe_finished(tmp_path: Path) -> None:
    settings = load_settings(profile="test")
    settings = settings.model_copy(update={"model_cache": tmp_path})
    [(_, job)] = quantize.plan(settings, f"{BASE}-w8a8", None, every=False)
    assert job.recorded() is None


def test_serve_refuses_fp8_on_a_cpu_without_amx(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    no_amx = Hardware(frozenset({"avx512f"}), None)
    monkeypatch.setattr("engine.quantization.capability.detect_hardware", lambda: no_amx)
    settings = load_settings(profile="test")
    fp8 = dataclasses.replace(settings.models[BASE], quantization="fp8")
    assert isinstance(fp8, ModelSettings)
    settings = settings.model_copy(update={"models": {BASE: fp8}})
    with pytest.raises(typer.Exit):
        serve._preflight(settings)
    assert "fp8 on CPU needs AMX" in capsys.readouterr().err


def test_each_variant_has_its_own_price_for_the_ledger() -> None:
    settings = load_settings(profile="test")
    prices = settings.prices.models
    for name, model in settings.models.items():
        if model.quantized is not None:
            assert prices[name].completion < prices[model.quantized.base].completion
