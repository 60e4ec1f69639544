"""The compile cache: a setting under the data directory that vLLM's processes are told of,
so a compiled engine's restart reuses what its first start compiled."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import CpuConfig, EngineConfig
from engine.launcher import server_launch
from gateway.settings import load_settings
from tests.conftest import MODEL

CACHE_VARIABLES = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def test_compile_cache_defaults_to_the_data_dir_and_reaches_the_engine_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMGW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LLMGW_COMPILE_CACHE_DIR", raising=False)
    settings = load_settings(profile="cpu")
    assert settings.compile_cache() == tmp_path / "compile-cache"
    env = settings.engine_config(MODEL).environment(on_cpu=False)
    assert env == {"VLLM_CACHE_ROOT": str(tmp_path / "compile-cache" / "vllm"),
                   "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "compile-cache" / "inductor"),
                   "TRITON_CACHE_DIR": str(tmp_path / "compile-cache" / "triton")}


def test_compile_cache_dir_setting_overrides_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMGW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LLMGW_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    config = load_settings(profile="dev").engine_config(MODEL)
    assert config.compile_cache_dir == tmp_path / "cache"
    env = config.environment(on_cpu=True)
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "cache" / "vllm")
    assert env["VLLM_CPU_KVCACHE_SPACE"] == str(config.cpu.kv_cache_gib)  # CPU's kept
    assert env["VLLM_USE_AOT_COMPILE"] == "0"  # vLLM CPU fails to load its AOT artifacts


def test_production_cpu_profile_compiles_the_chat_model_in_float32() -> None:
    chat = load_settings(profile="cpu").engine_config(MODEL)
    assert chat.enforce_eager is False
    assert chat.dtype == "float32"  # bfloat16 + torch.compile: garbage on vLLM CPU
    assert load_settings(profile="test").engine_config(MODEL).enforce_eager is True


def test_an_engine_without_a_cache_dir_leaves_vllms_defaults() -> None:
    config = EngineConfig("m", Path("/m"))
    assert not set(CACHE_VARIABLES) & set(config.environment(on_cpu=True))


def test_vllm_and_torch_read_the_cache_roots_from_that_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    from vllm import envs

    config = EngineConfig("m", Path("/m"), compile_cache_dir=tmp_path)
    for name, value in config.environment(on_cpu=False).items():
        monkeypatch.setenv(name, value)
    # vLLM's own definition (its module-level cache may be on in a process that ran an engine)
    assert envs.environment_variables["VLLM_CACHE_ROOT"]() == str(tmp_path / "vllm")
    assert cache_dir() == str(tmp_path / "inductor")


def test_a_vllm_server_launch_carries_the_compile_cache(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    config = EngineConfig("m", tmp_path, cpu=CpuConfig(threads_bind="0"),
                          compile_cache_dir=tmp_path / "cache")
    launch = server_launch(config, "127.0.0.1", 8123, api_key=None)
    assert launch.env["VLLM_CACHE_ROOT"] == str(tmp_path / "cache" / "vllm")
    assert launch.env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
