"""``llm-gateway engine serve`` launches vLLM's own api_server on loopback behind the replica
gate on the public port (engine/launcher.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.config import CpuConfig, EngineConfig, SpeculationConfig
from engine.errors import ModelNotPreparedError
from engine.launcher import API_SERVER_MODULE, replica_launch, server_launch
from engine.vllm_args import vllm_serve_args


@pytest.fixture
def config(tmp_path: Path) -> EngineConfig:
    (tmp_path / "config.json").write_text("{}")
    return EngineConfig("m", tmp_path, cpu=CpuConfig(threads_bind="0", kv_cache_gib=3))


def test_launch_is_vllms_api_server_with_the_settings_flags_and_the_bind(
    config: EngineConfig,
) -> None:
    launch = server_launch(config, "127.0.0.1", 8123, api_key=None, shutdown_timeout_s=30,
                           python="/py")
    assert launch.argv[:3] == ("/py", "-m", API_SERVER_MODULE)
    assert list(launch.argv[3:-6]) == vllm_serve_args(config)
    assert launch.argv[-6:] == ("--host", "127.0.0.1", "--port", "8123",
                                "--shutdown-timeout", "30")
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert launch.env["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_beyond_loopback_a_replica_needs_an_api_key(config: EngineConfig) -> None:
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        server_launch(config, "0.0.0.0", 8001, api_key=None)
    assert server_launch(config, "0.0.0.0", 8001, api_key="k").argv[-5] == "0.0.0.0"


def test_a_replica_binds_vllm_to_loopback_and_its_gate_to_the_public_address(
    config: EngineConfig,
) -> None:
    launch = replica_launch(config, "0.0.0.0", 8001, 8002, api_key="k", python="/py")
    assert launch.engine.argv[-6:-2] == ("--host", "127.0.0.1", "--port", "8002")
    assert (launch.gate.host, launch.gate.port) == ("0.0.0.0", 8001)
    assert launch.gate.upstream == "http://127.0.0.1:8002"
    assert launch.gate.policy.api_key == "k" and launch.gate.policy.task == "generate"
    pooling = dataclasses.replace(config, task="embed")
    assert replica_launch(pooling, "0.0.0.0", 8001, 8002, api_key="k").gate.policy.task == (
        "embed")


def test_beyond_loopback_a_replicas_gate_needs_an_api_key(config: EngineConfig) -> None:
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        replica_launch(config, "0.0.0.0", 8001, 8002, api_key=None)
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        replica_launch(config, "0.0.0.0", 8001, 8002, api_key="")
    assert replica_launch(config, "127.0.0.1", 8001, 8002, api_key=None).gate.policy.api_key is None
    with pytest.raises(ValueError, match="ports of their own"):
        replica_launch(config, "127.0.0.1", 8001, 8001, api_key="k")


def test_a_model_never_prepared_is_refused_before_vllm_starts(tmp_path: Path) -> None:
    with pytest.raises(ModelNotPreparedError, match="models prepare"):
        server_launch(EngineConfig("m", tmp_path / "missing"), "127.0.0.1", 8001, api_key=None)


def test_a_speculative_model_without_its_draft_is_refused_before_vllm_starts(
    config: EngineConfig, tmp_path: Path,
) -> None:
    head = SpeculationConfig("eagle3", 2, draft_path=tmp_path / "no-head", max_batch_size=4)
    speculative = dataclasses.replace(config, speculation=head)
    with pytest.raises(ModelNotPreparedError, match="draft install"):
        server_launch(speculative, "127.0.0.1", 8001, api_key=None)
    (tmp_path / "no-head").mkdir()
    (tmp_path / "no-head" / "config.json").write_text("{}")
    assert speculative.unprepared() is None
