"""The peer CPU users would pick instead: llama.cpp's server, through llama-cpp-python.

``llm-gateway bench --peer llama.cpp`` builds llama-cpp-python from PyPI's source package
into its own virtual environment (native CPU flags), cached under
``~/.cache/llm-gateway/bench/`` so only the first run pays the compile (~9-13 min on two
cores), then starts ``python -m llama_cpp.server`` on the very GGUF file the model ships
as (``source`` in configs/models.yaml) and measures it like every other target.

    python -m bench.llamacpp build     # build (or reuse) the cached environment
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.load import Endpoint
from bench.targets import RunningTarget, TargetError, _free_port, _launch, _wait_ready
from gateway.settings import Settings

VERSION = "0.3.36"  # pinned: the peer measured should not change under the table
CACHE = Path.home() / ".cache" / "llm-gateway" / "bench"
BUILT_MARKER = ".built"


class BuildError(RuntimeError):
    """The llama-cpp-python environment could not be built."""


@dataclass(frozen=True)
class PeerBuild:
    """Where and how the llama-cpp-python environment is built."""

    root: Path = CACHE
    version: str = VERSION
    python: str = sys.executable

    @property
    def venv(self) -> Path:
        tag = f"py{sys.version_info.major}{sys.version_info.minor}"
        return self.root / f"llama-cpp-python-{self.version}-{tag}-native"

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


def build_env(base: dict[str, str], cpus: int) -> dict[str, str]:
    """Native CPU build (AVX-512 where the machine has it), every core compiling."""
    env = dict(base)
    flags = env.get("CMAKE_ARGS", "")
    if "GGML_NATIVE" not in flags:
        flags = (flags + " -DGGML_NATIVE=ON").strip()
    env["CMAKE_ARGS"] = flags
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(max(1, cpus)))
    env.pop("PYTHONPATH", None)  # nothing of the gateway's venv leaks into the build
    return env


def ensure_built(build: PeerBuild) -> Path:
    """Build once (logged next to the venv); returns the venv's python."""
    if build.is_built():
        return build.venv_python
    build.root.mkdir(parents=True, exist_ok=True)
    env = build_env(dict(os.environ), os.cpu_count() or 1)
    with build.log.open("w") as log:
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
    """The GGUF file the model ships as (its ``source`` in configs/models.yaml)."""
    from engine.model_store import WheelGgufSource

    source = settings.model_source(model)
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
        return cls(ensure_built(build), gguf, alias, _free_port(), folder)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.describe(), f"http://127.0.0.1:{self.port}/v1", self.alias)

    def describe(self) -> str:
        return (f"llama.cpp server (llama-cpp-python {VERSION}, built from source with "
                f"GGML_NATIVE, {self.threads} threads) on {self.gguf.name}")

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
