from __future__ import annotations

import json
from pathlib import Path

from bench.targets import (
    LaunchOptions,
    TargetSpec,
    engine_config,
    write_gateway_config,
)
from engine.config import SpeculationConfig
from engine.vllm_args import vllm_serve_args
from gateway.settings import load_settings
from tests.conftest import MODEL


def _options(tmp_path: Path, kv: int | None = 1) -> LaunchOptions:
    return LaunchOptions(load_settings(profile="cpu"), "cpu", kv, 0.0, 60, tmp_path)


def test_engine_direct_gets_the_same_engine_settings_as_flags(tmp_path: Path) -> None:
    spec = TargetSpec("engine", MODEL, SpeculationConfig("ngram"))
    config = engine_config(spec, _options(tmp_path))
    args = vllm_serve_args(config)
    assert args[args.index("--model") + 1] == str(config.model_path)
    assert args[args.index("--dtype") + 1] == config.dtype
    assert args[args.index("--max-num-seqs") + 1] == str(config.max_num_seqs)
    assert ("--enforce-eager" in args) is config.enforce_eager  # the cpu profile compiles
    assert "--enable-prefix-caching" in args
    spec_json = json.loads(args[args.index("--speculative-config") + 1])
    assert spec_json["method"] == "ngram"
    assert "--quantization" not in args  # None: not passed
    assert config.cpu.kv_cache_gib == 1


def test_gateway_config_serves_only_the_model_under_test(tmp_path: Path) -> None:
    opts = _options(tmp_path)
    spec = TargetSpec("gateway", MODEL, SpeculationConfig("ngram", 3))
    folder = tmp_path / "config"
    folder.mkdir()
    write_gateway_config(spec, opts, folder, "bench-key")
    settings = load_settings(config_dir=folder, profile="bench")
    assert settings.default_model == MODEL
    assert settings.served_models() == [MODEL]
    assert settings.auth.admin_key is not None
    assert settings.auth.admin_key.get_secret_value() == "bench-key"
    engine = settings.engine_config(MODEL)
    assert engine.speculation.method == "ngram"
    assert engine.speculation.num_speculative_tokens == 3
    assert engine.cpu.kv_cache_gib == 1
    assert engine.model_path == opts.settings.model_path(MODEL)
