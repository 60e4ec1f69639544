"""A model's settings: the engine's options (declared in engine/config.py) plus the gateway's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from engine.config import EngineConfig, EngineOptions, SpeculationConfig
from gateway.settings import ModelSettings, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted(p.stem for p in (REPO / "configs" / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_and_gives_each_served_model_its_engine_config(profile: str) -> None:
    settings = load_settings(profile=profile)
    assert settings.served_models()
    for name in settings.served_models():
        model, config = settings.models[name], settings.engine_config(name)
        assert (config.model_name, config.model_path) == (name, settings.model_path(name))
        for option in dataclasses.fields(EngineOptions):
            if option.name != "speculation":
                assert getattr(config, option.name) == getattr(model, option.name), option.name


def test_engine_config_resolves_a_relative_draft_under_the_model_cache(tmp_path: Path) -> None:
    head = SpeculationConfig("eagle", 2, draft_path=Path("heads/m"), max_batch_size=4)
    model = ModelSettings(dtype="bfloat16", max_model_len=4096, speculation=head, enabled=True)
    settings = Settings(models={"m": model}, model_cache=tmp_path,
                        compile_cache_dir=tmp_path / "compiled")
    config = settings.engine_config("m")
    assert config == EngineConfig(
        "m", tmp_path / "m", dtype="bfloat16", max_model_len=4096,
        speculation=dataclasses.replace(head, draft_path=tmp_path / "heads" / "m"),
        compile_cache_dir=tmp_path / "compiled")


def test_model_settings_defaults_are_the_engines() -> None:
    model, engine = ModelSettings(), EngineOptions()
    for option in dataclasses.fields(EngineOptions):
        assert getattr(model, option.name) == getattr(engine, option.name), option.name


@pytest.mark.parametrize("entry,location,message", [
    ({"max_model_length": 4096}, "models.m.max_model_length", "Unexpected keyword argument"),
    ({"speculation": {"k": 2}}, "models.m.speculation.k", "Unexpected keyword argument"),
    ({"cpu": {"kv_cache_gib": 0}}, "models.m.cpu.kv_cache_gib", "greater than or equal to 1"),
    ({"max_model_len": 8}, "models.m.max_model_len", "greater than or equal to 16"),
    ({"dtype": "float64"}, "models.m.dtype", "'float32', 'bfloat16', 'float16' or 'auto'"),
    ({"speculation": {"method": "eagle"}}, "models.m.speculation", "needs draft_path"),
    ({"routing": {"max_attempts": 0}}, "models.m.routing.max_attempts", "greater than or equal"),
])
def test_a_bad_model_setting_is_refused_where_it_is(
    entry: dict[str, object], location: str, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(models={"m": entry})  # type: ignore[dict-item]
    assert location in str(refused.value) and message in str(refused.value)


def test_environment_overrides_nested_engine_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMGW_MODELS__M__MAX_MODEL_LEN", "4096")
    monkeypatch.setenv("LLMGW_MODELS__M__SPECULATION__METHOD", "ngram")
    monkeypatch.setenv("LLMGW_MODELS__M__CPU__KV_CACHE_GIB", "3")
    config = Settings(models={"m": {"dtype": "bfloat16"}}).engine_config("m")  # type: ignore[dict-item]
    assert (config.max_model_len, config.dtype, config.cpu.kv_cache_gib) == (4096, "bfloat16", 3)
    assert config.speculation.method == "ngram"


def test_a_model_written_back_as_yaml_reads_the_same() -> None:
    for name, model in load_settings(profile="cpu-speculation").models.items():
        assert ModelSettings(**yaml.safe_load(yaml.safe_dump(model.to_dict()))) == model, name


def test_orphan_after_s_when_not_longer_than_the_stream_deadline_then_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recovery would close a stream still running (engine or relayed) and bill it nothing."""
    for orphan in ("1800", "60"):
        monkeypatch.setenv("LLMGW_METERING__ORPHAN_AFTER_S", orphan)
        with pytest.raises(ValidationError) as refused:
            load_settings(profile="dev")
        assert "metering.orphan_after_s" in str(refused.value)
        assert "limits.stream_deadline_s (1800 s)" in str(refused.value)
    monkeypatch.setenv("LLMGW_LIMITS__STREAM_DEADLINE_S", "59")
    assert load_settings(profile="dev").metering.orphan_after_s == 60


def test_a_copy_is_validated_again() -> None:
    model = ModelSettings()
    assert dataclasses.replace(model, enabled=False).enabled is False
    with pytest.raises(ValidationError, match="max_model_len"):
        dataclasses.replace(model, max_model_len=8)
