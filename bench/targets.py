"""Servers under test, started one at a time and always stopped.

``gateway``: ``python -m cli serve`` with a generated config folder that serves only
the model under test. ``engine``: vLLM's own OpenAI server on the same model folder with
the same engine settings (dtype, eager mode, CPU binding, KV cache, speculation): the
"engine direct" baseline. Both run in their own process group so stopping them also stops
vLLM's engine-core and worker processes.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from bench.load import Endpoint
from engine.config import EngineConfig, SpeculationConfig
from engine.vllm_args import vllm_serve_args
from gateway.settings import Settings, default_config_dir

REPO = Path(__file__).resolve().parent.parent
TargetKind = Literal["gateway", "engine", "peer"]


class TargetError(RuntimeError):
    """A server under test failed to start or died."""


@dataclass(frozen=True)
class TargetSpec:
    """One server configuration. ``speculation`` None keeps the model's configured one."""

    kind: TargetKind
    model: str
    speculation: SpeculationConfig | None = None
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.kind}:{self.model}"


@dataclass(frozen=True)
class LaunchOptions:
    settings: Settings
    profile: str
    kv_cache_gib: int | None
    min_free_gib: float
    startup_timeout_s: float
    log_dir: Path


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return float("inf")


def wait_for_memory(min_gib: float, timeout_s: float = 1800) -> None:
    """Shared machines: wait until enough memory is free to start another engine."""
    deadline = time.monotonic() + timeout_s
    while available_gib() < min_gib:
        if time.monotonic() > deadline:
            raise TargetError(f"less than {min_gib} GiB available for {timeout_s:.0f} s")
        time.sleep(5)


def _model_settings(spec: TargetSpec, opts: LaunchOptions) -> dict[str, Any]:
    model = opts.settings.models[spec.model].to_dict()
    model["path"] = str(opts.settings.model_path(spec.model))
    if (template := opts.settings.chat_template(spec.model)) is not None:
        model["chat_template"] = str(template)  # the generated config folder has no templates
    if "enabled" in model:
        model["enabled"] = True
    if opts.kv_cache_gib is not None:
        model["cpu"]["kv_cache_gib"] = opts.kv_cache_gib
    if spec.speculation is not None:
        engine = engine_config(spec, opts).speculation  # draft path already resolved
        model["speculation"] = {key: str(value) if isinstance(value, Path) else value
                                for key, value in dataclasses.asdict(engine).items()
                                if key in model["speculation"]}
    return model


def _models_yaml(spec: TargetSpec, opts: LaunchOptions) -> dict[str, Any]:
    """Every configured model (quantized ones name their base), only ``spec.model`` on."""
    models: dict[str, Any] = {}
    for name, model in opts.settings.models.items():
        dumped = model.to_dict()
        if "enabled" in dumped:
            dumped["enabled"] = False
        models[name] = dumped
    models[spec.model] = _model_settings(spec, opts)
    return {"default_model": spec.model, "models": models}


def write_gateway_config(spec: TargetSpec, opts: LaunchOptions, folder: Path,
                         admin_key: str) -> None:
    """A config folder: the shared YAML files, the models (only the one under test
    enabled when the settings know ``enabled``), and a ``bench`` profile with an admin key."""
    source = default_config_dir()
    for path in source.glob("*.yaml"):
        if path.name != "models.yaml":
            (folder / path.name).write_text(path.read_text())
    (folder / "models.yaml").write_text(yaml.safe_dump(_models_yaml(spec, opts),
                                                       sort_keys=False))
    profile_file = source / "profiles" / f"{opts.profile}.yaml"
    profile = yaml.safe_load(profile_file.read_text()) or {}
    profile.pop("models", None)
    profile.pop("default_model", None)
    profile["auth"] = {"enabled": True, "admin_key": admin_key}
    (folder / "profiles").mkdir()
    (folder / "profiles" / "bench.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))


def engine_config(spec: TargetSpec, opts: LaunchOptions) -> EngineConfig:
    config = opts.settings.engine_config(spec.model)
    if opts.kv_cache_gib is not None:
        config = dataclasses.replace(
            config, cpu=dataclasses.replace(config.cpu, kv_cache_gib=opts.kv_cache_gib))
    if spec.speculation is not None:
        config = dataclasses.replace(config, speculation=spec.speculation)
    return config


class RunningTarget:
    """A started server process and the endpoint that reaches it."""

    def __init__(self, endpoint: Endpoint, process: subprocess.Popen[bytes] | None,
                 log_path: Path | None, admin_url: str | None) -> None:
        self.endpoint = endpoint
        self.process = process
        self.log_path = log_path
        self.admin_url = admin_url  # the gateway's /admin/engines, for speculation counters
        self.startup_s: float | None = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def engine_counters(self) -> dict[str, Any] | None:
        if self.admin_url is None:
            return None
        try:
            response = httpx.get(self.admin_url, headers=self.endpoint.headers(), timeout=10)
            response.raise_for_status()
            counters: dict[str, Any] = response.json()[self.endpoint.model]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return counters

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _ready(response: httpx.Response) -> bool:
    """200, and for a gateway every model loaded (its ``/ready`` is 200 once any serves);
    vLLM's ``/health`` has no body."""
    if response.status_code != 200:
        return False
    try:
        models = response.json().get("models", {})
    except ValueError:
        return True
    return all(models.values())


def _wait_ready(target: RunningTarget, ready_url: str, timeout_s: float) -> None:
    assert target.process is not None
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if target.process.poll() is not None:
            raise TargetError(f"exited with {target.process.returncode}:\n{target.log_tail()}")
        try:
            if _ready(httpx.get(ready_url, timeout=5)):
                target.startup_s = round(time.monotonic() - started, 1)
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TargetError(f"not ready after {timeout_s:.0f} s:\n{target.log_tail()}")


def _launch(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _base_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("LLMGW_PROFILE", None)
    return env


@contextmanager
def started(spec: TargetSpec, opts: LaunchOptions) -> Iterator[RunningTarget]:
    """Start ``spec`` (waiting for free memory first), yield it ready, always stop it."""
    wait_for_memory(opts.min_free_gib)
    port = free_port()
    log_path = opts.log_dir / f"{spec.name.replace(':', '-').replace('/', '_')}.log"
    with tempfile.TemporaryDirectory(prefix="llmgw-bench-") as tmp:
        env = _base_env()
        base = f"http://127.0.0.1:{port}"
        if spec.kind == "gateway":
            key = secrets.token_hex(16)
            write_gateway_config(spec, opts, Path(tmp), key)
            env["LLMGW_CONFIG_DIR"] = tmp
            env["LLMGW_DATA_DIR"] = tmp  # its own ledger, not the user's
            command = [sys.executable, "-m", "cli", "serve", "--profile", "bench",
                       "--port", str(port)]
            endpoint = Endpoint(spec.name, base + "/v1", spec.model, key)
            target = RunningTarget(endpoint, None, log_path, base + "/admin/engines")
            ready = base + "/ready"
        else:
            config = engine_config(spec, opts)
            env.update(config.cpu.environment())
            command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                       *vllm_serve_args(config), "--host", "127.0.0.1", "--port", str(port),
                       "--disable-uvicorn-access-log"]
            endpoint = Endpoint(spec.name, base + "/v1", spec.model)
            target = RunningTarget(endpoint, None, log_path, None)
            ready = base + "/health"
        target.process = _launch(command, env, log_path)
        try:
            _wait_ready(target, ready, opts.startup_timeout_s)
            yield target
        finally:
            target.stop()
