"""``llm-gateway engine serve``: the replica's vLLM flags are its settings' (LoRA's among
them, so the gateway can load adapters there), then the ones after ``--``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cli.engine import replica_config
from engine.launcher import RUNTIME_LORA_ENV, replica_launch
from engine.vllm_args import vllm_serve_args
from gateway.settings import load_settings
from tests.conftest import MODEL


def test_replica_when_model_has_max_loras_then_lora_flags_kept_beside_extra_ones(
    tmp_path: Path,
) -> None:
    settings = load_settings(profile="test")
    assert settings.models[MODEL].max_loras == 2  # the test profile turns LoRA on
    config = replica_config(settings, MODEL, ["--max-cpu-loras", "4"])
    assert config.extra_args == ("--enable-lora", "--max-loras", "2", "--max-lora-rank", "8",
                                 "--max-cpu-loras", "4")
    (tmp_path / "config.json").write_text("{}")
    launch = replica_launch(dataclasses.replace(config, model_path=tmp_path),
                            "127.0.0.1", 9001, 9002, api_key="k")
    assert launch.engine.env[RUNTIME_LORA_ENV] == "True"
    assert "--enable-lora" in vllm_serve_args(config)


def test_replica_when_lora_off_then_no_runtime_loading(tmp_path: Path) -> None:
    settings = load_settings(profile="test")
    config = replica_config(settings, "all-minilm-l6-v2", [])
    (tmp_path / "config.json").write_text("{}")
    launch = replica_launch(dataclasses.replace(config, model_path=tmp_path),
                            "127.0.0.1", 9001, 9002, api_key="k")
    assert RUNTIME_LORA_ENV not in launch.engine.env
