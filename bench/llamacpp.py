"""The peer CPU users would pick instead: llama.cpp's server, through llama-cpp-python.

``llm-gateway bench --peer llama.cpp`` builds llama-cpp-python from PyPI's source package
into its own virtual environment (this CPU's instruction sets), cached under
``~/.cache/llm-gateway/bench/`` so only the first run pays the compile (~9-13 min on two
cores), then starts ``python -m llama_cpp.server`` on the very GGUF file the model ships
as (``source`` in configs/models.yaml) and measures it like every other target.

    python -m bench.llamacpp build     # build (or reuse) the cached environment
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import Endpoint
from bench.targets import RunningTarget, TargetError, _launch, _wait_ready, free_port
from gateway.settings import Settings

VERSION = "0.3.36"  # pinned: the peer measured should not change under the table
CACHE = Path.home() / ".cache" / "llm-gateway" / "bench"
BUILT_MARKER = ".built"


class BuildError(RuntimeError):
    """The llama-cpp-python environment could not be built."""


# /proc/cpuinfo flag -> ggml's CMake option. AMX is left out on purpose: a VM can list
# amx_tile yet fault on its instructions (Firecracker: SIGILL on tilezero at the first
# matmul), which is what GGML_NATIVE=ON (-march=native) builds in.
_ISA = (("sse4_2", "GGML_SSE42"), ("avx", "GGML_AVX"), ("avx2", "GGML_AVX2"),
        ("fma", "GGML_FMA"), ("f16c", "GGML_F16C"), ("bmi2", "GGML_BMI2"),
        ("avx_vnni", "GGML_AVX_VNNI"), ("avx512f", "GGML_AVX512"),
        ("avx512vbmi", "GGML_AVX512_VBMI"), ("avx512_vnni", "GGML_AVX512_VNNI"),
        ("avx512_bf16", "GGML_AVX512_BF16"))
_NO_AMX = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str]) -> str:
    """This CPU's instruction sets, spelled out (not -march=native), AMX off."""
    on = [f"-D{option}=ON" for flag, option in _ISA if flag in flags]
    return " ".join(["-DGGML_NATIVE=OFF", *on, *(f"-D{option}=OFF" for option in _NO_AMX)])


def _default_cmake_args() -> str:
    return os.environ.get("CMAKE_ARGS") or cmake_args(cpu_flags())


@dataclass(frozen=True)
class PeerBuild:
    """Where and how the llama-cpp-python environment is built."""

    root: Path = CACHE
    version: str = VERSION
    python: str = sys.executable
    cmake_args: str = field(default_factory=_default_cmake_args)

    @property
    def venv(self) -> Path:
        tag = f"py{sys.version_info.major}{sys.version_info.minor}"
        flags = hashlib.sha256(self.cmake_args.encode()).hexdigest()[:8]
        return self.root / f"llama-cpp-python-{self.version}-{tag}-{flags}"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def log(self) -> Path:
        return self.venv.with_name(self.venv.name + ".build.log")

    def is_built(self) -> bool:
        return (self.venv / BUILT_MARKER).is_file() and self.venv_python.is_file()

    def commands(self) -> list[list[str]]:
        """Create the venv, then install from the source package only (no binary wheel)."""
        pip = [str(self.venv_python), "-m", "pip", "install", "--no-cache-dir"]
        return [
            [self.python, "-m", "venv", str(self.venv)],
            [*pip, "--no-binary", "llama-cpp-python",
             f"llama-cpp-python[server]=={self.version}"],
        ]


def build_env(base: dict[str, str], args: str, cpus: int) -> dict[str, str]:
    """The build's CMake flags, every core compiling."""
    env = dict(base)
    env["CMAKE_ARGS"] = args
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(max(1, cpus)))
    env.pop("PYTHONPATH", None)  # nothing of the gateway's venv leaks into the build
    return env


def ensure_built(build: PeerBuild) -> Path:
    """Build once (logged next to the venv); returns the venv's python."""
    if build.is_built():
        return build.venv_python
    build.root.mkdir(parents=True, exist_ok=True)
    env = build_env(dict(os.environ), build.cmake_args, os.cpu_count() or 1)
    with build.log.open("w") as log:
        log.write(f"CMAKE_ARGS={build.cmake_args}\n")
        for command in build.commands():
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise BuildError(f"{command[2:5]} failed ({done.returncode}); see {build.log}")
    (build.venv / BUILT_MARKER).write_text(build.version + "\n")
    return build.venv_python


def server_command(python: Path, gguf: Path, alias: str, port: int,
                   threads: int, n_ctx: int = 2048) -> list[str]:
    """llama.cpp's OpenAI server on one GGUF. ``interrupt_requests`` off: by default a new
    request silently cuts off the running stream; off, concurrent requests queue instead."""
    return [str(python), "-m", "llama_cpp.server", "--model", str(gguf),
            "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]


def gguf_path(settings: Settings, model: str) -> Path:
    """The GGUF file the model ships as (its ``source`` in configs/models.yaml; a quantized
    variant's base model's)."""
    from engine.model_store import WheelGgufSource

    quantized = settings.models[model].quantized
    source = settings.model_source(quantized.base if quantized else model)
    if not isinstance(source, WheelGgufSource):
        raise BuildError(f"{model} does not ship as a GGUF file: llama.cpp cannot serve it")
    return source.locate()


@dataclass(frozen=True)
class LlamaCppPeer:
    """llama.cpp's server on ``gguf`` at a port chosen up front (the run's peer endpoint)."""

    python: Path
    gguf: Path
    alias: str
    port: int
    log_dir: Path
    threads: int = len(os.sched_getaffinity(0))
    startup_timeout_s: float = 300

    @classmethod
    def prepare(cls, build: PeerBuild, gguf: Path, alias: str,
                log_dir: Path | None = None) -> LlamaCppPeer:
        folder = log_dir or Path(tempfile.mkdtemp(prefix="llmgw-llamacpp-"))
        return cls(ensure_built(build), gguf, alias, free_port(), folder)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.describe(), f"http://127.0.0.1:{self.port}/v1", self.alias)

    def describe(self) -> str:
        return (f"llama.cpp server (llama-cpp-python {VERSION}, built from source for this "
                f"CPU, {self.threads} threads) on {self.gguf.name}")

    @contextmanager
    def started(self) -> Iterator[RunningTarget]:
        """Start the server, yield it ready, always stop it (its whole process group)."""
        command = server_command(self.python, self.gguf, self.alias, self.port, self.threads)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        log_path = self.log_dir / "llama-cpp-server.log"
        target = RunningTarget(self.endpoint, None, log_path, None)
        try:
            target.process = _launch(command, env, log_path)
        except OSError as exc:
            raise TargetError(f"cannot start llama.cpp's server: {exc}") from exc
        try:
            _wait_ready(target, f"http://127.0.0.1:{self.port}/v1/models",
                        self.startup_timeout_s)
            yield target
        finally:
            target.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m bench.llamacpp build")
    print(ensure_built(PeerBuild()))
