"""The chart's schema for a model's ``settings`` is generated from the settings declaration.

``engine/config.py`` declares the engine's keys once; ``gateway/settings.py`` extends them with the
gateway's; ``gateway/chart_schema.py`` writes ``values.schema.json``'s model settings from that.
These tests fail when the committed schema drifts from the declaration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from engine.config import CpuConfig, EngineOptions, SpeculationConfig
from engine.field_rules import field_rules
from gateway import chart_schema
from gateway.settings import ModelSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "helm" / "llm-gateway" / "values.schema.json"
PROFILES = sorted(p.stem for p in (REPO / "configs" / "profiles").glob("*.yaml"))


def committed_settings_schema() -> dict[str, Any]:
    node: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    for key in chart_schema.SETTINGS_PATH:
        node = node[key]
    return node


def test_committed_values_schema_is_generated_from_the_settings_declaration() -> None:
    committed = SCHEMA_FILE.read_text()
    assert committed_settings_schema() == chart_schema.settings_schema(), (
        "values.schema.json drifted from the settings: run python -m gateway.chart_schema")
    assert chart_schema.render(committed) == committed  # byte for byte, the rest untouched


def test_check_mode_fails_on_a_stale_schema_and_the_rewrite_fixes_it(tmp_path: Path) -> None:
    stale = json.loads(SCHEMA_FILE.read_text())
    settings = stale
    for key in chart_schema.SETTINGS_PATH:
        settings = settings[key]
    del settings["properties"]["speculation"]["properties"]["draft_under_load"]
    path = tmp_path / "values.schema.json"
    path.write_text(json.dumps(stale, indent=2) + "\n")
    assert chart_schema.main(["--check", "--path", str(path)]) == 1
    assert chart_schema.main(["--path", str(path)]) == 0
    assert path.read_text() == SCHEMA_FILE.read_text()


@pytest.mark.parametrize("declared,section", [
    (EngineOptions, ()), (SpeculationConfig, ("speculation",)), (CpuConfig, ("cpu",)),
])
def test_schema_bounds_and_choices_are_the_engines_own(
    declared: type[Any], section: tuple[str, ...]
) -> None:
    node = committed_settings_schema()
    for key in section:
        node = node["properties"][key]
    for rule in field_rules(declared):
        prop = node["properties"][rule.name]
        if rule.choices is not None:
            assert prop["enum"] == list(rule.choices), rule.name
        if rule.lower is not None:
            assert prop["minimum" if rule.lower[1] else "exclusiveMinimum"] == rule.lower[0]
        if rule.upper is not None:
            assert prop["maximum" if rule.upper[1] else "exclusiveMaximum"] == rule.upper[0]


def configured_models() -> list[tuple[str, str, dict[str, Any]]]:
    """Every model of every profile as the chart would carry it (less what the chart writes)."""
    found = []
    for profile in PROFILES:
        for name, model in load_settings(profile=profile).models.items():
            entry = {k: v for k, v in model.to_dict().items()
                     if k not in chart_schema.CHART_WRITTEN}
            found.append((profile, name, entry))
    return found


def test_every_configured_model_passes_the_chart_schema() -> None:
    validator = jsonschema.Draft7Validator(committed_settings_schema())
    for profile, name, entry in configured_models():
        errors = [error.message for error in validator.iter_errors(entry)]
        assert not errors, f"{profile}/{name}: {errors}"


@pytest.mark.parametrize("entry", [
    {"max_model_length": 4096},
    {"max_model_len": 8},
    {"dtype": "float64"},
    {"gpu_memory_utilization": 0},
    {"tensor_parallel_size": 0},
    {"cpu": {"kv_cache_gib": 0}},
    {"cpu": {"threads": 4}},
    {"speculation": {"method": "medusa"}},
    {"speculation": {"num_speculative_tokens": 17}},
    {"speculation": {"acceptance_floor": 1.5}},
    {"speculation": {"max_batch_size": 0}},
    {"speculation": {"draft_under_load": "sometimes"}},
    {"routing": {"max_attempts": 0}},
    {"quantized": {"base": "m", "method": "fp4"}},
], ids=lambda entry: yaml.safe_dump(entry, default_flow_style=True).strip())
def test_a_setting_the_gateway_refuses_the_chart_refuses_too(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ModelSettings(**entry)
    assert not jsonschema.Draft7Validator(committed_settings_schema()).is_valid(entry)
